"""The machine: guest memory, port and MMIO buses, devices, loaders, vCPU loop."""
