"""Views of a result for people: text (terminal)."""
