"""
The real reactor, real sockets and child processes (twistd, systemd, nginx, chromium, node,
tmpfs, the benchmarks, wheel builds). Some skip locally without their tools; CI runs them all.
"""
