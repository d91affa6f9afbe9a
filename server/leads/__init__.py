"""Lead capture: what the caller needs, where, and how to call them back."""
