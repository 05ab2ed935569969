//! Model: config, safetensors weights, tokenizer, plaintext f32 and fixed-point reference passes.
