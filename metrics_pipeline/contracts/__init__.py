"""The data contracts: the run manifest and every warehouse table, declared once."""
