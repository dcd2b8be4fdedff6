"""
The server over in-memory transports (iosim, StringTransport) on a task.Clock: no real
sockets, no child processes. Part of the fast loop.
"""
