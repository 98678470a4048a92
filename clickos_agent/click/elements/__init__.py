"""The element catalog: importing this package registers every element class."""
