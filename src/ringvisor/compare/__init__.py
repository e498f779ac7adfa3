"""`ringvisor compare`: the bundled guest's workloads under every technique
this machine offers, side by side, in the form of Adams & Agesen's table
(ASPLOS 2006): host nanoseconds and traps per iteration of each
nanobenchmark, the ratio to native, the red-pill verdict, compute MIPS."""
