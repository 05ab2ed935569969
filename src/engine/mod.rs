//! Private BERT: one function per block, calling protocols through a profile.
