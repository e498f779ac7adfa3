"""VMX non-root operation of the soft CPU (Intel SDM vol. 3C ch. 23-29):
the VMCS (vmcs.py), the capability MSRs (capabilities.py), the control bits
(controls.py), VM-entry checks (entry.py), guest/host state (state.py),
exit decisions in non-root operation (nonroot.py), VM exits (exits.py),
EPT and the 2-D walk (ept.py), and VMLAUNCH/VMRESUME (operation.py)."""
