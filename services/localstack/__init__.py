"""The local real-component stack: tansu, nx-27017, an SMTP sink and the four services as
processes. ``steward up`` and the test suites start it through the same code."""
