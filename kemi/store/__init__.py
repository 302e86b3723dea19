"""What the Python side reads from MySQL, always parameterised, cached where it can be."""
