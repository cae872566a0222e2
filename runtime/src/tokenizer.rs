//! The Qwen2/Qwen3 byte-level BPE tokenizer, built from GGUF metadata alone (no `tokenizer.json`).
//!
//! llama.cpp writes the tokenizer as `tokenizer.ggml.*` keys: `model` = `"gpt2"`, `pre` = `"qwen2"`, the
//! token strings (byte-level encoded, GPT-2 style `Ġ`), a token type per token, and the merges (`"a b"`).
//! From these we rebuild exactly the HF `tokenizer.json` pipeline of Qwen2/Qwen3 (and SAIL-VL2):
//!
//! * added tokens: every control (type 3) and user-defined (type 4) token is matched atomically on the raw text
//!   before anything else (`normalized: false`); control tokens are *special* (dropped by `skip_special`
//!   decoding), user-defined ones (`<think>`, `<tool_call>`, ...) are not. Unused tokens (type 5, `[PADn]`) are
//!   never matched in text and decode to nothing;
//! * normalizer NFC;
//! * pre-tokenizer: the Qwen2 split regex (`Isolated`), then ByteLevel without prefix space and without its
//!   own regex;
//! * model: BPE from the vocab and merges (no unk, no dropout, no byte fallback);
//! * decoder: ByteLevel (each token's chars mapped back to bytes, the whole byte string decoded lossily).
//!
//! One known difference from HF: llama.cpp's converter types every added token that *looks* special (`<|...|>`)
//! as control, so `<|fim_prefix|>`, `<|fim_middle|>`, `<|fim_suffix|>`, `<|fim_pad|>`, `<|repo_name|>` and
//! `<|file_sep|>` (HF `special: false`) are special here and dropped by `skip_special` decoding, as in llama.cpp.
//! Encoding is unaffected (they are atomic either way).
//!
//! Encoding runs through a `tokenizers::Tokenizer` built programmatically; decoding is the ByteLevel decoder
//! reimplemented on bytes so that [`TextStream`] and [`Tokenizer::decode`] share one code path.

use std::time::Instant;

use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::gguf::names;
use crate::gguf::{GgufFile, Value};

pub const KEY_MODEL: &str = names::tokenizer::MODEL;
pub const KEY_PRE: &str = names::tokenizer::PRE;
pub const KEY_TOKENS: &str = names::tokenizer::TOKENS;
pub const KEY_TOKEN_TYPE: &str = names::tokenizer::TOKEN_TYPE;
pub const KEY_MERGES: &str = names::tokenizer::MERGES;
pub const KEY_EOS: &str = names::tokenizer::EOS_ID;
pub const KEY_BOS: &str = names::tokenizer::BOS_ID;
pub const KEY_PAD: &str = names::tokenizer::PADDING_ID;
pub const KEY_ADD_BOS: &str = names::tokenizer::ADD_BOS;

/// The Qwen2 pre-tokenizer regex (HF `tokenizer.json`, `pre_tokenizer.pretokenizers[0].pattern.Regex`).
pub const QWEN2_PRE_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Errors building the tokenizer from metadata, encoding or decoding. Metadata errors name the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer metadata key '{key}' is missing")]
    MissingKey { key: &'static str },
    #[error("tokenizer metadata key '{key}': expected {expected}, found {found}")]
    WrongType { key: &'static str, expected: &'static str, found: String },
    #[error("tokenizer metadata key '{key}', element {index}: expected {expected}, found {found}")]
    WrongElementType { key: &'static str, index: usize, expected: &'static str, found: String },
    #[error("'{KEY_TOKENS}' has {tokens} entries but '{KEY_TOKEN_TYPE}' has {types}")]
    LengthMismatch { tokens: usize, types: usize },
    #[error("'{KEY_TOKENS}' is empty")]
    EmptyVocab,
    #[error("'{KEY_TOKEN_TYPE}', element {index}: unknown token type {value}")]
    BadTokenType { index: usize, value: i64 },
    #[error("unsupported tokenizer model '{0}' in '{KEY_MODEL}' (only \"gpt2\", byte-level BPE, is supported)")]
    UnsupportedModel(String),
    #[error("unsupported pre-tokenizer '{0}' in '{KEY_PRE}' (only \"qwen2\" is supported)")]
    UnsupportedPre(String),
    #[error("'{KEY_MERGES}', element {index}: {reason} (merge {merge:?})")]
    BadMerge { index: usize, merge: String, reason: String },
    #[error("tokenizer metadata key '{key}': token id {id} is out of range (vocabulary has {vocab_size} tokens)")]
    BadSpecialId { key: &'static str, id: u64, vocab_size: usize },
    #[error("token id {id} is out of range (vocabulary has {vocab_size} tokens)")]
    IdOutOfRange { id: u32, vocab_size: usize },
    #[error("building the BPE tokenizer failed: {0}")]
    Build(String),
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// llama.cpp's `llama_token_type` (`tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    /// Control token: atomic in text, special (dropped by `skip_special` decoding).
    Control,
    /// User-defined added token: atomic in text, but not special (`<think>`, `<tool_call>`, ...).
    UserDefined,
    /// Unused padding entry (`[PADn]`): never produced by encoding, decodes to nothing.
    Unused,
    Byte,
}

impl TokenType {
    pub fn from_i64(v: i64) -> Option<TokenType> {
        Some(match v {
            0 => TokenType::Undefined,
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }

    /// Matched atomically in text before normalization and BPE.
    fn is_atomic(self) -> bool {
        matches!(self, TokenType::Control | TokenType::UserDefined | TokenType::Unknown)
    }

    /// Dropped by `skip_special` decoding.
    fn is_special(self) -> bool {
        matches!(self, TokenType::Control | TokenType::Unknown)
    }
}

/// A byte-level BPE tokenizer (Qwen2 pre-tokenizer) built from GGUF metadata. `Send + Sync`.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    tokens: Vec<String>,
    types: Vec<TokenType>,
    eos: Option<u32>,
    bos: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.tokens.len())
            .field("eos", &self.eos)
            .field("bos", &self.bos)
            .field("pad", &self.pad)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

fn type_name(v: &Value) -> String {
    match v {
        Value::Array(t, items) => format!("array of {t:?} ({} elements)", items.len()),
        other => format!("{:?}", other.value_type()),
    }
}

fn req<'a>(get: &impl Fn(&str) -> Option<&'a Value>, key: &'static str) -> Result<&'a Value, TokenizerError> {
    get(key).ok_or(TokenizerError::MissingKey { key })
}

fn req_str<'a>(get: &impl Fn(&str) -> Option<&'a Value>, key: &'static str) -> Result<&'a str, TokenizerError> {
    let v = req(get, key)?;
    v.as_str().ok_or_else(|| TokenizerError::WrongType { key, expected: "a string", found: type_name(v) })
}

fn req_array<'a>(
    get: &impl Fn(&str) -> Option<&'a Value>,
    key: &'static str,
    expected: &'static str,
) -> Result<&'a [Value], TokenizerError> {
    let v = req(get, key)?;
    v.as_array().ok_or_else(|| TokenizerError::WrongType { key, expected, found: type_name(v) })
}

/// An optional token id key: absent is fine, present must be an integer below `vocab_size`.
fn opt_id<'a>(
    get: &impl Fn(&str) -> Option<&'a Value>,
    key: &'static str,
    vocab_size: usize,
) -> Result<Option<u32>, TokenizerError> {
    let Some(v) = get(key) else { return Ok(None) };
    let Some(id) = v.as_u64() else {
        return Err(TokenizerError::WrongType { key, expected: "an unsigned integer", found: type_name(v) });
    };
    match u32::try_from(id) {
        Ok(id32) if (id32 as usize) < vocab_size => Ok(Some(id32)),
        _ => Err(TokenizerError::BadSpecialId { key, id, vocab_size }),
    }
}

impl Tokenizer {
    /// Build the tokenizer from a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Self::from_metadata(|key| file.get(key))
    }

    /// Build the tokenizer from any metadata lookup (`key -> value`), e.g. a hand-made map in tests.
    pub fn from_metadata<'a, F>(get: F) -> Result<Tokenizer, TokenizerError>
    where
        F: Fn(&str) -> Option<&'a Value>,
    {
        let t0 = Instant::now();
        let model = req_str(&get, KEY_MODEL)?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_string()));
        }
        let pre = req_str(&get, KEY_PRE)?;
        if pre != "qwen2" {
            return Err(TokenizerError::UnsupportedPre(pre.to_string()));
        }

        let token_values = req_array(&get, KEY_TOKENS, "an array of strings")?;
        let type_values = req_array(&get, KEY_TOKEN_TYPE, "an array of integers")?;
        let merge_values = req_array(&get, KEY_MERGES, "an array of strings")?;
        if token_values.is_empty() {
            return Err(TokenizerError::EmptyVocab);
        }
        if token_values.len() != type_values.len() {
            return Err(TokenizerError::LengthMismatch { tokens: token_values.len(), types: type_values.len() });
        }
        if u32::try_from(token_values.len()).is_err() {
            return Err(TokenizerError::Build(format!("{} tokens do not fit u32 ids", token_values.len())));
        }

        let mut tokens = Vec::with_capacity(token_values.len());
        for (index, v) in token_values.iter().enumerate() {
            let s = v.as_str().ok_or_else(|| TokenizerError::WrongElementType {
                key: KEY_TOKENS,
                index,
                expected: "a string",
                found: type_name(v),
            })?;
            tokens.push(s.to_string());
        }
        let mut types = Vec::with_capacity(type_values.len());
        for (index, v) in type_values.iter().enumerate() {
            let raw = v.as_i64().ok_or_else(|| TokenizerError::WrongElementType {
                key: KEY_TOKEN_TYPE,
                index,
                expected: "an integer",
                found: type_name(v),
            })?;
            types.push(TokenType::from_i64(raw).ok_or(TokenizerError::BadTokenType { index, value: raw })?);
        }

        let mut merges = Vec::with_capacity(merge_values.len());
        for (index, v) in merge_values.iter().enumerate() {
            let s = v.as_str().ok_or_else(|| TokenizerError::WrongElementType {
                key: KEY_MERGES,
                index,
                expected: "a string",
                found: type_name(v),
            })?;
            // Byte-level tokens never contain a literal space, so the first space separates the pair.
            let (a, b) = s.split_once(' ').ok_or_else(|| TokenizerError::BadMerge {
                index,
                merge: s.to_string(),
                reason: "no space between the two tokens".into(),
            })?;
            if a.is_empty() || b.is_empty() {
                return Err(TokenizerError::BadMerge { index, merge: s.to_string(), reason: "empty token".into() });
            }
            merges.push((a.to_string(), b.to_string()));
        }

        let vocab_size = tokens.len();
        let eos = opt_id(&get, KEY_EOS, vocab_size)?;
        let bos = opt_id(&get, KEY_BOS, vocab_size)?;
        let pad = opt_id(&get, KEY_PAD, vocab_size)?;
        let add_bos = match get(KEY_ADD_BOS) {
            None => false,
            Some(v) => v.as_bool().ok_or_else(|| TokenizerError::WrongType {
                key: KEY_ADD_BOS,
                expected: "a bool",
                found: type_name(v),
            })?,
        };
        if add_bos && bos.is_none() {
            return Err(TokenizerError::MissingKey { key: KEY_BOS });
        }

        // The BPE vocabulary: every token except the unused padding entries (which BPE could never produce
        // anyway). Added tokens stay in it so that `add_tokens` reuses their GGUF ids.
        let mut vocab = Vocab::with_capacity(vocab_size);
        let mut duplicates = 0usize;
        for (id, (tok, ty)) in tokens.iter().zip(&types).enumerate() {
            if *ty == TokenType::Unused {
                continue;
            }
            match vocab.entry(tok.clone()) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(id as u32);
                }
                std::collections::hash_map::Entry::Occupied(_) => duplicates += 1,
            }
        }
        if duplicates > 0 {
            tracing::warn!(duplicates, "GGUF vocabulary has duplicate token strings; the first id of each is used");
        }

        // Check every merge here: `BpeBuilder::build` panics (slice index) on a merge longer than the longest
        // token, and its own error does not say which merge is wrong.
        let mut joined = String::new();
        for (index, (a, b)) in merges.iter().enumerate() {
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            for part in [a.as_str(), b.as_str(), joined.as_str()] {
                if !vocab.contains_key(part) {
                    return Err(TokenizerError::BadMerge {
                        index,
                        merge: format!("{a} {b}"),
                        reason: format!("{part:?} is not in '{KEY_TOKENS}'"),
                    });
                }
            }
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| TokenizerError::Build(format!("BPE model: {e}")))?;

        let split = Split::new(SplitPattern::Regex(QWEN2_PRE_REGEX.into()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| TokenizerError::Build(format!("pre-tokenizer regex: {e}")))?;
        let pre_tokenizer = Sequence::new(vec![split.into(), ByteLevel::new(false, false, false).into()]);

        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner
            .with_normalizer(Some(NFC))
            .map_err(|e| TokenizerError::Build(e.to_string()))?
            .with_pre_tokenizer(Some(pre_tokenizer))
            .with_decoder(Some(ByteLevel::new(false, false, false)));

        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(tok, ty)| ty.is_atomic() && !tok.is_empty())
            .map(|(tok, ty)| {
                AddedToken::from(tok.clone(), ty.is_special())
                    .single_word(false)
                    .lstrip(false)
                    .rstrip(false)
                    .normalized(false)
            })
            .collect();
        let n_added = added.len();
        inner.add_tokens(added).map_err(|e| TokenizerError::Build(format!("adding special tokens: {e}")))?;
        for (id, (tok, ty)) in tokens.iter().zip(&types).enumerate() {
            if ty.is_atomic() && !tok.is_empty() && inner.token_to_id(tok) != Some(id as u32) {
                return Err(TokenizerError::Build(format!(
                    "added token {tok:?} (id {id}) resolves to id {:?}; its string is duplicated in '{KEY_TOKENS}'",
                    inner.token_to_id(tok)
                )));
            }
        }

        tracing::debug!(
            vocab_size,
            n_added,
            merges = merge_values.len(),
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "tokenizer built from GGUF metadata"
        );
        Ok(Tokenizer { inner, tokens, types, eos, bos, pad, add_bos })
    }

    /// Token ids of `text`. Control and user-defined tokens written in the text (`<|im_start|>`,
    /// `<IMG_CONTEXT>`, `<think>`) are matched atomically. A BOS is prepended only if `add_bos_token` is true
    /// (false for Qwen / SAIL-VL2).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = self.inner.encode_fast(text, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let ids = enc.get_ids();
        match (self.add_bos, self.bos) {
            (true, Some(bos)) => {
                let mut v = Vec::with_capacity(ids.len() + 1);
                v.push(bos);
                v.extend_from_slice(ids);
                Ok(v)
            }
            _ => Ok(ids.to_vec()),
        }
    }

    /// Text of `ids` (HF `decode`): with `skip_special`, control tokens are dropped (user-defined ones such as
    /// `<think>` are kept). Invalid UTF-8 becomes U+FFFD. Unused `[PADn]` ids decode to nothing.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            self.push_token_bytes(id, skip_special, &mut bytes)?;
        }
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// An incremental detokenizer: push ids one at a time, get the newly complete text.
    pub fn stream(&self, skip_special: bool) -> TextStream<'_> {
        TextStream { tok: self, state: StreamState::new(skip_special) }
    }

    /// Id of a token string as stored in GGUF (byte-level form, e.g. `"Ġworld"`, or `"<|im_end|>"`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        if let Some(id) = self.inner.token_to_id(token) {
            return Some(id);
        }
        // Unused entries are not in the BPE vocabulary.
        self.tokens.iter().zip(&self.types).position(|(t, ty)| *ty == TokenType::Unused && t == token).map(|i| i as u32)
    }

    /// The token string as stored in GGUF (byte-level form).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// A control token (dropped by `skip_special` decoding). `<think>` & co. are not special.
    pub fn is_special(&self, id: u32) -> bool {
        self.token_type(id).is_some_and(TokenType::is_special)
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn pad_id(&self) -> Option<u32> {
        self.pad
    }

    /// Number of GGUF tokens (= embedding rows, unused `[PADn]` entries included).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Append the bytes `id` contributes to the decoded text.
    fn push_token_bytes(&self, id: u32, skip_special: bool, out: &mut Vec<u8>) -> Result<(), TokenizerError> {
        let ty = self.token_type(id).ok_or(TokenizerError::IdOutOfRange { id, vocab_size: self.tokens.len() })?;
        match ty {
            TokenType::Unused => {}
            t if skip_special && t.is_special() => {}
            _ => byte_level_decode(&self.tokens[id as usize], out),
        }
        Ok(())
    }
}

/// The byte of a GPT-2 byte-level char (inverse of `bytes_to_unicode`): printable Latin-1 bytes map to
/// themselves, the other 68 bytes (0..=32, 127..=160, 173) to U+0100.. in order.
fn byte_of_char(c: char) -> Option<u8> {
    let c = c as u32;
    match c {
        33..=126 | 161..=172 | 174..=255 => Some(c as u8),
        256..=288 => Some((c - 256) as u8),
        289..=322 => Some((c - 289 + 127) as u8),
        323 => Some(173),
        _ => None,
    }
}

/// HF ByteLevel decoder for one token: its chars mapped to bytes, or its raw UTF-8 bytes if any char is not a
/// byte-level char (e.g. an added token containing a space).
fn byte_level_decode(token: &str, out: &mut Vec<u8>) {
    let start = out.len();
    for c in token.chars() {
        match byte_of_char(c) {
            Some(b) => out.push(b),
            None => {
                out.truncate(start);
                out.extend_from_slice(token.as_bytes());
                return;
            }
        }
    }
}

/// Incremental detokenizer from [`Tokenizer::stream`]. The concatenation of every `push` and `finish` equals
/// `decode` of all the ids: incomplete UTF-8 at the end (a CJK character or emoji split across byte-level
/// tokens) is held back until it completes; invalid bytes become U+FFFD exactly as in `decode`.
pub struct TextStream<'a> {
    tok: &'a Tokenizer,
    state: StreamState,
}

impl std::fmt::Debug for TextStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.state.fmt(f)
    }
}

impl TextStream<'_> {
    /// Add one token; returns the text that became complete (possibly empty). An out-of-range id is an error
    /// and leaves the stream unchanged.
    pub fn push(&mut self, id: u32) -> Result<String, TokenizerError> {
        self.state.push(self.tok, id)
    }

    /// Bytes held back so far (an incomplete UTF-8 sequence), if any.
    pub fn pending_bytes(&self) -> &[u8] {
        &self.state.pending
    }

    /// The rest of the text: held-back bytes of an unfinished sequence become U+FFFD.
    pub fn finish(self) -> String {
        self.state.finish()
    }
}

/// What a [`TextStream`] keeps between tokens, without the borrow of its tokenizer: for streams that live
/// beside the tokenizer's owner (an answer being generated by a session).
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    skip_special: bool,
    pending: Vec<u8>,
}

impl StreamState {
    pub fn new(skip_special: bool) -> StreamState {
        StreamState { skip_special, pending: Vec::new() }
    }

    /// [`TextStream::push`] with the tokenizer given each time.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String, TokenizerError> {
        tok.push_token_bytes(id, self.skip_special, &mut self.pending)?;
        let mut out = String::new();
        let mut pos = 0;
        while pos < self.pending.len() {
            match std::str::from_utf8(&self.pending[pos..]) {
                Ok(s) => {
                    out.push_str(s);
                    pos = self.pending.len();
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // from_utf8 validated this prefix, so this never falls back to "".
                    out.push_str(std::str::from_utf8(&self.pending[pos..pos + valid]).unwrap_or_default());
                    pos += valid;
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            pos += n;
                        }
                        None => break, // an incomplete sequence at the end: wait for more bytes
                    }
                }
            }
        }
        self.pending.drain(..pos);
        Ok(out)
    }

    /// [`TextStream::finish`].
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_is_gpt2_bytes_to_unicode() {
        // Rebuild bytes_to_unicode as in GPT-2 and check that byte_of_char inverts it.
        let mut bs: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
        let mut cs = bs.clone();
        let mut n = 0;
        for b in 0..256u32 {
            if !bs.contains(&b) {
                bs.push(b);
                cs.push(256 + n);
                n += 1;
            }
        }
        for (b, c) in bs.iter().zip(&cs) {
            assert_eq!(byte_of_char(char::from_u32(*c).unwrap()), Some(*b as u8));
        }
        assert_eq!(byte_of_char(' '), None);
        assert_eq!(byte_of_char('\u{144}'), None);
        assert_eq!(byte_of_char('你'), None);
    }

    #[test]
    fn raw_fallback_for_non_byte_level_tokens() {
        let mut out = Vec::new();
        byte_level_decode("Ġa b", &mut out);
        assert_eq!(out, "Ġa b".as_bytes());
        out.clear();
        byte_level_decode("Ġworld", &mut out);
        assert_eq!(out, b" world");
    }
}
