"""Inbound protocols. Each module exports ``PROTOCOL``, an InboundProtocol instance."""
