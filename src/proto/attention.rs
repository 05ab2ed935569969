//! Share × share products for attention (placeholder, filled below).
