"""Local upstream servers speaking each provider's real wire format, scripted by the tests."""
