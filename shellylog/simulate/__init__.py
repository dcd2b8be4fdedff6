"""
A Shelly Gen2 device simulator: devices that dial shellylog's WebSocket as real ones do.

Run it against a server::

    python -m shellylog.simulate ws://127.0.0.1:5000/ws --devices 10 --profile pump

Its modules, following C{protocol.md}:

 - L{shellylog.simulate.model}: the device model, pure (no reactor, no I/O; time comes in
   through an injected clock): what every device is, and the messages it sends.
 - L{shellylog.simulate.switch}: the switch family of the model (xPM devices), and its
   profiles. Another family is another such module: L{shellylog.simulate.pm1} (PM Mini),
   L{shellylog.simulate.em} (Pro 3EM), L{shellylog.simulate.em1} (Pro EM-50),
   L{shellylog.simulate.cover} (covers), L{shellylog.simulate.light} (dimmers, RGBW PM).
 - L{shellylog.simulate.profiles}: every family's profiles, by name.
 - L{shellylog.simulate.client}: the network, Autobahn clients over Twisted that put model
   devices on their outbound WebSocket, and a fleet of them.
 - L{shellylog.simulate.__main__}: the command line.

This package imports none of them, so that the model can be used without Autobahn
or a reactor.
"""
