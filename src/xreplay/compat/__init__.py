"""Drop-in compatibility layers for legacy replay APIs (PyMARL, DI-engine)."""
