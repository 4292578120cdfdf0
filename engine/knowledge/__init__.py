"""The rule pack as knowledge: its format (rules), vocabularies, fact catalogue, loading and validation (pack)."""
