"""Wire schemas: the exact JSON shapes of each API family, as msgspec Structs. No translation logic here."""
