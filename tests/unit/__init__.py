"""Pure logic: no reactor, no transports (temporary files are fine). Part of the fast loop."""
