"""The rule reviewer's tools: lint, golden cases and coverage, explain, describe."""
