"""The NumPy backend: vectorised NumPy implementations computing in the input's dtype (float32 or
float64). Used for float64 input, when the compiled module is missing, or when forced."""
