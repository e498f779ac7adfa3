"""What an emulated instruction tells the monitor to do next."""
NEXT = "next"          # done: resume after the instruction
JUMPED = "jumped"      # done: EIP (and maybe CS/CPL) set by the instruction
HALT = "halt"          # the guest halted with interrupts enabled
REFLECT = "reflect"    # not a deprivileging artefact: the fault goes to the guest
SHADOW = "shadow"      # done, and the next instruction runs in an interrupt shadow
