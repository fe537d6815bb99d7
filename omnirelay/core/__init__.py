"""The canonical core: protocol-neutral types, no I/O."""
