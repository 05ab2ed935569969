//! BFV homomorphic encryption layer: parameters, keys, encodings, circuit-private conversions.
