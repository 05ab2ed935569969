//! Model: config, safetensors weights, tokenizer, plaintext f32 and fixed-point reference passes.
//!
//! No cryptography lives here. The module answers three questions for the rest of the crate:
//! * which checkpoint folder a `--model` argument means ([`resolve`], [`models_dir`]);
//! * what the client holds ([`PublicModel`]: config, tokenizer, embedding tables) and what the server holds
//!   ([`ServerWeights`]: every encoder layer, pooler and classifier head);
//! * what the private computation must reproduce: [`forward_f32`] (the plaintext reference) and
//!   [`forward_fixed`] (the same network in the integer arithmetic of the protocols).
//!
//! Supported checkpoints: Hugging Face `BertModel` (names with or without the `bert.` prefix, optional
//! `classifier.{weight,bias}` head or a separate `head.safetensors`) and `MPNetModel` (relative position
//! bias, position ids offset by `pad + 1`, no token types). Sentence-transformer folders (`modules.json`)
//! are mean-pooled and L2-normalised; plain BERT checkpoints use the tanh pooler.

mod config;
mod fixed;
mod forward;
mod resolve;
pub mod ranges;
pub mod shapes;
pub mod tiny;
mod tokenize;
mod weights;

pub use config::{Arch, BertConfig, PoolingMode, RELATIVE_ATTENTION_MAX_DISTANCE};
pub use fixed::{
    forward_fixed, forward_fixed_with, CarrySite, CarryTape, ExactNonLinear, FixedConfig, FixedModel, FixedNonLinear, QLinear, QuantizedLayer,
    QuantizedWeights,
};
pub use forward::{
    add_norm, bert_pooler, check_input, classifier_head, cosine, embed, encoder_layer, erf, ffn, forward_f32, gelu,
    gelu_inplace, l2_normalize, layer_norm, layer_norm_row, linear, masked_softmax, mean_pool, pool, position_ids,
    relative_position_bias, relative_position_bucket, self_attention, ModelOutput,
};
pub use resolve::{
    fetch_script, is_checkpoint, models_dir, resolve, resolve_in, ResolvedModel, CHECKPOINT_FILES, DEFAULT_MODEL,
    KNOWN_MODELS,
};
pub use tokenize::{TextTokenizer, Tokenized};
pub use weights::{
    f16_to_f32, EncoderLayer, LayerNorm, Linear, Model, PublicModel, ServerWeights, TensorSource, HEAD_FILE,
};
