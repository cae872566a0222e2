//! GGUF tokenizer metadata from a Hugging Face Qwen2-style byte-level BPE tokenizer, written the
//! way llama.cpp's `convert_hf_to_gguf.py` does for Qwen2/Qwen3 (`_set_vocab_gpt2`,
//! `get_vocab_base`, gguf-py `SpecialVocab`), so that our GGUF and llama.cpp's agree key for key.
//!
//! Rules reproduced (checked against the llama.cpp-written `qwen3-dense.q8_0.gguf` fixture):
//! * `tokens` has exactly `llm_config.vocab_size` entries; ids that neither the BPE vocab nor an
//!   added token uses become `[PAD{id}]` with type UNUSED (5).
//! * an added token is CONTROL (3) when `special` is true or it *looks* special (`<|...|>`,
//!   `<｜...｜>`, `<unused...>`, `<pad>`, `<mask>`, `<2mass>`, `[@BOS@]`), else USER_DEFINED (4).
//!   So `<|fim_prefix|>` (special=false) is CONTROL while `<think>`/`<tool_call>` are USER_DEFINED.
//! * merges are `"a b"` strings; the `["a","b"]` pair form is joined with spaces inside a part
//!   escaped as U+0120, and `merges.txt` is the fallback when tokenizer.json has none.
//! * special ids: for bos, eos, unk, sep, pad, cls, mask in that order, tokenizer_config's
//!   `<typ>_token` string is looked up among the added tokens first; config ids only fill the
//!   types still unset. Keys come out in the order they were set (eos, padding, bos for SAIL-VL2).
//!   `cls` has no GGUF key and is dropped, as in gguf-py.
//!
//! Deliberate differences from llama.cpp:
//! * the chat template defaults to `chat_template.jinja` over tokenizer_config's `chat_template`
//!   ([`ChatTemplateSource::PreferJinja`]); gguf-py prefers tokenizer_config, which for SAIL-VL2
//!   is a leftover Kimi-VL template (spec §5.2). [`ChatTemplateSource::LlamaCpp`] reproduces gguf-py.
//! * `add_bos_token` and `add_eos_token` are always written (false unless tokenizer_config says
//!   otherwise; the llama.cpp fixture has both false).
//! * `tokenizer.ggml.pre` is not fingerprinted: the pre-tokenizer must be the Qwen2 split regex
//!   (anything else is refused rather than mislabelled).
//! * post-processors other than ByteLevel are ignored with a warning (Qwen has none).
//! * the `decode(encode(token))` round trip llama.cpp applies to non-normalized added tokens is
//!   taken to be the identity, which holds for byte-level BPE added tokens.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use runtime::gguf::names;
use runtime::gguf::value::{Value, ValueType};
use serde::Deserialize;
use serde_json::Map;

use super::config::{LlmConfig, SailVlConfig};

pub const TOKENIZER_JSON: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
pub const CHAT_TEMPLATE_JINJA: &str = "chat_template.jinja";
pub const CHAT_TEMPLATE_JSON: &str = "chat_template.json";
pub const MERGES_TXT: &str = "merges.txt";

/// The pre-tokenizer split regex of Qwen2/Qwen3 (llama.cpp `tokenizer.ggml.pre` = "qwen2").
pub const QWEN2_PRETOKENIZER_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The image placeholder tokens of SAIL-VL2 (spec §5.1, §5.3).
pub const IMG_CONTEXT: &str = "<IMG_CONTEXT>";
pub const IMG_START: &str = "<img>";
pub const IMG_END: &str = "</img>";

/// llama.cpp `llama_token_type` values stored in `tokenizer.ggml.token_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum TokenType {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: invalid: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
    #[error("{file}: tokenizer model {kind:?} is unsupported (only byte-level BPE)")]
    UnsupportedModel { file: String, kind: String },
    #[error("{file}: pre-tokenizer {found} is unsupported (only the Qwen2 split regex, llama.cpp pre \"qwen2\")")]
    UnsupportedPreTokenizer { file: String, found: String },
    #[error("{file}: token {token:?} has id {id}, not below llm_config.vocab_size {vocab_size}")]
    IdOutOfRange { file: String, token: String, id: u32, vocab_size: u32 },
    #[error("{file}: id {id} is used by both {first:?} and {second:?}")]
    DuplicateId { file: String, id: u32, first: String, second: String },
    #[error("special token {typ} id {id} is not below llm_config.vocab_size {vocab_size}")]
    SpecialIdOutOfRange { typ: String, id: u32, vocab_size: u32 },
    #[error("{dir}: no merges in {TOKENIZER_JSON} and no {MERGES_TXT}")]
    NoMerges { dir: String },
    #[error("{file}: added token {token:?} is missing (needed for image placeholders)")]
    MissingImageToken { file: String, token: &'static str },
}

/// Which chat template goes into `tokenizer.chat_template`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChatTemplateSource {
    /// `chat_template.jinja`, else tokenizer_config's `chat_template`, else `chat_template.json`.
    #[default]
    PreferJinja,
    /// gguf-py's order: tokenizer_config's `chat_template`, else the jinja file, else the json file;
    /// nothing at all without a tokenizer_config.json.
    LlamaCpp,
}

/// Ids of the image placeholder tokens, looked up among the added tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageTokenIds {
    /// `<IMG_CONTEXT>`: rows replaced by projector output (151671 in SAIL-VL2).
    pub context: u32,
    /// `<img>`
    pub start: u32,
    /// `</img>`
    pub end: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AddedToken {
    pub id: u32,
    pub content: String,
    #[serde(default)]
    pub special: bool,
    #[serde(default)]
    pub normalized: bool,
}

#[derive(Deserialize)]
struct TokenizerJson {
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
    #[serde(default)]
    pre_tokenizer: Option<serde_json::Value>,
    #[serde(default)]
    post_processor: Option<serde_json::Value>,
    model: BpeModel,
}

#[derive(Deserialize)]
struct BpeModel {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    vocab: HashMap<String, u32>,
    #[serde(default)]
    merges: Option<Vec<Merge>>,
}

/// tokenizers < 0.20 wrote `"a b"`; newer ones write `["a", "b"]` so parts may contain spaces.
#[derive(Deserialize)]
#[serde(untagged)]
enum Merge {
    Joined(String),
    Pair(String, String),
}

/// A chat template as found on disk: one string, or named variants (`[{name, template}]`).
#[derive(Debug, Clone, PartialEq)]
pub enum ChatTemplate {
    Single(String),
    Named(Vec<(String, String)>),
}

/// The tokenizer files of a checkpoint folder, parsed.
#[derive(Debug)]
pub struct HfTokenizer {
    dir: PathBuf,
    vocab: HashMap<String, u32>,
    added_tokens: Vec<AddedToken>,
    merges: Vec<String>,
    post_processor: Option<serde_json::Value>,
    tokenizer_config: Option<Map<String, serde_json::Value>>,
    jinja_template: Option<String>,
    json_template: Option<ChatTemplate>,
}

fn read_text(path: &Path) -> Result<Option<String>, TokenizerError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TokenizerError::Io { file: path.display().to_string(), source }),
    }
}

fn required_text(path: &Path) -> Result<String, TokenizerError> {
    std::fs::read_to_string(path).map_err(|source| TokenizerError::Io { file: path.display().to_string(), source })
}

/// Everything the converter takes from the tokenizer files: the `tokenizer.*` GGUF entries plus
/// the ids and template it needs for the mmproj metadata.
#[derive(Debug, Clone)]
pub struct TokenizerMetadata {
    /// `tokenizer.*` key/value pairs in llama.cpp's order.
    pub entries: Vec<(String, Value)>,
    /// The (default) chat template written to `tokenizer.chat_template`, if any.
    pub chat_template: Option<String>,
    pub image_context_id: u32,
    pub image_start_id: u32,
    pub image_end_id: u32,
    /// `tokenizer.ggml.eos_token_id` as written (`<|im_end|>` for SAIL-VL2).
    pub eos_id: Option<u32>,
}

impl TokenizerMetadata {
    /// Load from a checkpoint folder with the default template choice (`chat_template.jinja` first).
    pub fn load(dir: &Path, config: &SailVlConfig) -> Result<Self, TokenizerError> {
        Self::load_with(dir, config, ChatTemplateSource::default())
    }

    pub fn load_with(dir: &Path, config: &SailVlConfig, source: ChatTemplateSource) -> Result<Self, TokenizerError> {
        let tok = HfTokenizer::load(dir)?;
        let ImageTokenIds { context, start, end } = tok.image_token_ids()?;
        let entries = tok.gguf_metadata(&config.llm, source)?;
        let find = |key: &str| entries.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let chat_template = find("tokenizer.chat_template").and_then(|v| v.as_str()).map(str::to_string);
        let eos_id = find(names::tokenizer::EOS_ID).and_then(|v| v.as_u64()).map(|id| id as u32);
        Ok(TokenizerMetadata {
            entries,
            chat_template,
            image_context_id: context,
            image_start_id: start,
            image_end_id: end,
            eos_id,
        })
    }
}

/// Does an added token that is not flagged `special` still look like a control token?
/// Same list as llama.cpp's `does_token_look_special`.
pub fn looks_special(token: &str) -> bool {
    matches!(token, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (token.starts_with("<|") && token.ends_with("|>"))
        || (token.starts_with("<｜") && token.ends_with("｜>"))
        || (token.starts_with("<unused") && token.ends_with('>'))
}

/// `["a b", "c"]` → `"aĠb c"`: a space inside a part would break the `"a b"` format, so gguf-py
/// shifts it by 256 like byte-level BPE does.
fn join_merge(a: &str, b: &str) -> String {
    let esc = |s: &str| s.replace(' ', "\u{0120}");
    format!("{} {}", esc(a), esc(b))
}

/// gguf-py `_try_load_merges_txt`: skip a leading `#` line, keep lines of exactly two fields.
fn parse_merges_txt(text: &str) -> Vec<String> {
    let mut lines = text.lines().peekable();
    if lines.peek().is_some_and(|l| l.trim().starts_with('#')) {
        lines.next();
    }
    let mut merges = Vec::new();
    for line in lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            [] => {}
            [a, b] => merges.push(format!("{a} {b}")),
            _ => tracing::warn!(line, "{MERGES_TXT}: malformed entry ignored"),
        }
    }
    merges
}

fn parse_chat_template_value(v: &serde_json::Value) -> Option<ChatTemplate> {
    match v {
        serde_json::Value::String(s) => Some(ChatTemplate::Single(s.clone())),
        serde_json::Value::Array(items) => Some(ChatTemplate::Named(
            items
                .iter()
                .filter_map(|it| {
                    let name = it.get("name")?.as_str()?;
                    let template = it.get("template")?.as_str()?;
                    Some((name.to_string(), template.to_string()))
                })
                .collect(),
        )),
        _ => None,
    }
}

/// tokenizer_config's `<typ>_token`: a string or an AddedToken-like `{content: ...}` object.
fn token_content(entry: Option<&serde_json::Value>) -> Option<&str> {
    match entry? {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Object(o) => o.get("content")?.as_str(),
        _ => None,
    }
}

/// gguf-py special-token types, in its order, with the GGUF key each one is written to.
/// `cls` has no key in gguf-py's writer and is dropped there.
const SPECIAL_TYPES: [(&str, Option<&str>); 7] = [
    ("bos", Some(names::tokenizer::BOS_ID)),
    ("eos", Some(names::tokenizer::EOS_ID)),
    ("unk", Some(names::tokenizer::UNKNOWN_ID)),
    // sic: the key is misspelled in GGUF itself.
    ("sep", Some(names::tokenizer::SEPARATOR_ID)),
    ("pad", Some(names::tokenizer::PADDING_ID)),
    ("cls", None),
    ("mask", Some(names::tokenizer::MASK_ID)),
];

impl HfTokenizer {
    /// Read `tokenizer.json` (required) plus the optional `tokenizer_config.json`,
    /// `chat_template.jinja`, `chat_template.json` and `merges.txt` from `dir`.
    pub fn load(dir: &Path) -> Result<HfTokenizer, TokenizerError> {
        let tj_path = dir.join(TOKENIZER_JSON);
        let tj_file = tj_path.display().to_string();
        let tj: TokenizerJson = serde_json::from_str(&required_text(&tj_path)?)
            .map_err(|source| TokenizerError::Json { file: tj_file.clone(), source })?;

        if let Some(kind) = tj.model.kind.as_deref() {
            if kind != "BPE" {
                return Err(TokenizerError::UnsupportedModel { file: tj_file, kind: kind.to_string() });
            }
        }
        check_pre_tokenizer(&tj_file, tj.pre_tokenizer.as_ref())?;

        let mut merges: Vec<String> = tj
            .model
            .merges
            .unwrap_or_default()
            .into_iter()
            .map(|m| match m {
                Merge::Joined(s) => s,
                Merge::Pair(a, b) => join_merge(&a, &b),
            })
            .collect();
        if merges.is_empty() {
            if let Some(text) = read_text(&dir.join(MERGES_TXT))? {
                merges = parse_merges_txt(&text);
            }
        }
        if merges.is_empty() {
            return Err(TokenizerError::NoMerges { dir: dir.display().to_string() });
        }

        let tc_path = dir.join(TOKENIZER_CONFIG);
        let tokenizer_config = match read_text(&tc_path)? {
            None => None,
            Some(text) => {
                let file = tc_path.display().to_string();
                let v: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|source| TokenizerError::Json { file: file.clone(), source })?;
                match v {
                    serde_json::Value::Object(m) => Some(m),
                    _ => return Err(TokenizerError::Invalid { file, reason: "not a JSON object".into() }),
                }
            }
        };
        let jinja_template = read_text(&dir.join(CHAT_TEMPLATE_JINJA))?;
        let json_template = match read_text(&dir.join(CHAT_TEMPLATE_JSON))? {
            None => None,
            Some(text) => {
                let file = dir.join(CHAT_TEMPLATE_JSON).display().to_string();
                let v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|source| TokenizerError::Json { file, source })?;
                v.get("chat_template").and_then(parse_chat_template_value)
            }
        };
        if dir.join("additional_chat_templates").is_dir() {
            tracing::warn!("additional_chat_templates/ is not converted; only the default template is written");
        }

        Ok(HfTokenizer {
            dir: dir.to_path_buf(),
            vocab: tj.model.vocab,
            added_tokens: tj.added_tokens,
            merges,
            post_processor: tj.post_processor,
            tokenizer_config,
            jinja_template,
            json_template,
        })
    }

    /// Added tokens as listed in tokenizer.json.
    pub fn added_tokens(&self) -> &[AddedToken] {
        &self.added_tokens
    }

    /// Merges in `"a b"` form, in rank order.
    pub fn merges(&self) -> &[String] {
        &self.merges
    }

    /// Id of the first added token whose content is `content`.
    pub fn added_token_id(&self, content: &str) -> Option<u32> {
        self.added_tokens.iter().find(|t| t.content == content).map(|t| t.id)
    }

    /// Ids of `<IMG_CONTEXT>`, `<img>` and `</img>`; an error names the first one absent.
    pub fn image_token_ids(&self) -> Result<ImageTokenIds, TokenizerError> {
        let find = |token: &'static str| {
            self.added_token_id(token).ok_or_else(|| TokenizerError::MissingImageToken {
                file: self.dir.join(TOKENIZER_JSON).display().to_string(),
                token,
            })
        };
        Ok(ImageTokenIds { context: find(IMG_CONTEXT)?, start: find(IMG_START)?, end: find(IMG_END)? })
    }

    /// The chat template `source` selects, if any.
    pub fn chat_template(&self, source: ChatTemplateSource) -> Option<ChatTemplate> {
        let from_config = || -> Option<Option<ChatTemplate>> {
            let v = self.tokenizer_config.as_ref()?.get("chat_template")?;
            Some(parse_chat_template_value(v))
        };
        let from_files =
            || self.jinja_template.clone().map(ChatTemplate::Single).or_else(|| self.json_template.clone());
        match source {
            ChatTemplateSource::PreferJinja => from_files().or_else(|| from_config().flatten()),
            ChatTemplateSource::LlamaCpp => {
                self.tokenizer_config.as_ref()?;
                // gguf-py: tokenizer_config.get('chat_template', alt) — a present key wins even if null.
                match from_config() {
                    Some(t) => t,
                    None => from_files(),
                }
            }
        }
    }

    /// Token strings and llama.cpp token types for ids `0..vocab_size`.
    pub fn tokens_and_types(&self, vocab_size: u32) -> Result<(Vec<String>, Vec<TokenType>), TokenizerError> {
        let file = self.dir.join(TOKENIZER_JSON).display().to_string();
        let n = vocab_size as usize;
        let mut tokens: Vec<Option<String>> = vec![None; n];
        let mut types = vec![TokenType::Unused; n];
        for (token, &id) in &self.vocab {
            let slot = tokens.get_mut(id as usize).ok_or_else(|| TokenizerError::IdOutOfRange {
                file: file.clone(),
                token: token.clone(),
                id,
                vocab_size,
            })?;
            if let Some(first) = slot {
                // HashMap order is arbitrary; report the pair in a stable order.
                let (first, second) =
                    if *first <= *token { (first.clone(), token.clone()) } else { (token.clone(), first.clone()) };
                return Err(TokenizerError::DuplicateId { file, id, first, second });
            }
            *slot = Some(token.clone());
            types[id as usize] = TokenType::Normal;
        }
        // Added tokens override the base vocab at their id (as transformers' get_vocab does).
        for t in &self.added_tokens {
            let slot = tokens.get_mut(t.id as usize).ok_or_else(|| TokenizerError::IdOutOfRange {
                file: file.clone(),
                token: t.content.clone(),
                id: t.id,
                vocab_size,
            })?;
            let (text, ty) = if t.special || looks_special(&t.content) {
                (t.content.clone(), TokenType::Control)
            } else {
                // llama.cpp pre-normalises SentencePiece spaces in user-defined tokens (Gemma).
                (t.content.replace('\u{2581}', " "), TokenType::UserDefined)
            };
            *slot = Some(text);
            types[t.id as usize] = ty;
        }
        let tokens = tokens.into_iter().enumerate().map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]"))).collect();
        Ok((tokens, types))
    }

    /// Special-token ids in the order gguf-py's `SpecialVocab` would set them: tokenizer_config
    /// token strings (looked up among the added tokens) first, then `llm` config ids.
    pub fn special_token_ids(&self, llm: &LlmConfig) -> Vec<(&'static str, u32)> {
        let mut set: Vec<(&'static str, u32)> = Vec::new();
        let mut put = |typ: &'static str, id: u32| {
            if !set.iter().any(|(t, _)| *t == typ) {
                set.push((typ, id));
            }
        };
        if let Some(tc) = &self.tokenizer_config {
            // gguf-py: no bos → fall back to cls; no eos → fall back to sep.
            let content = |typ: &str| token_content(tc.get(&format!("{typ}_token"))).filter(|s| !s.is_empty());
            for (typ, _) in SPECIAL_TYPES {
                let text = match typ {
                    "bos" => content("bos").or_else(|| content("cls")),
                    "eos" => content("eos").or_else(|| content("sep")),
                    _ => content(typ),
                };
                if let Some(id) = text.and_then(|s| self.added_token_id(s)) {
                    put(typ, id);
                }
            }
        }
        for (typ, _) in SPECIAL_TYPES {
            if let Some(id) = llm.special_token_ids.get(typ).and_then(|ids| ids.single()) {
                put(typ, id);
            }
        }
        set
    }

    /// The `tokenizer.*` GGUF key/value pairs, in llama.cpp's key order.
    pub fn gguf_metadata(
        &self,
        llm: &LlmConfig,
        template_source: ChatTemplateSource,
    ) -> Result<Vec<(String, Value)>, TokenizerError> {
        if let Some(pp) = &self.post_processor {
            let kind = pp.get("type").and_then(|t| t.as_str()).unwrap_or("?");
            if kind != "ByteLevel" {
                tracing::warn!(
                    post_processor = kind,
                    "post-processor ignored; add_bos/add_eos come from tokenizer_config only"
                );
            }
        }
        let (tokens, types) = self.tokens_and_types(llm.vocab_size)?;
        let mut kv: Vec<(String, Value)> = vec![
            (names::tokenizer::MODEL.into(), Value::String("gpt2".into())),
            (names::tokenizer::PRE.into(), Value::String("qwen2".into())),
            (names::tokenizer::TOKENS.into(), Value::strings(tokens)),
            (names::tokenizer::TOKEN_TYPE.into(), Value::i32s(types.into_iter().map(|t| t as i32))),
            (names::tokenizer::MERGES.into(), Value::strings(self.merges.iter().cloned())),
        ];
        for (typ, id) in self.special_token_ids(llm) {
            if id >= llm.vocab_size {
                return Err(TokenizerError::SpecialIdOutOfRange { typ: typ.into(), id, vocab_size: llm.vocab_size });
            }
            match SPECIAL_TYPES.iter().find(|(t, _)| *t == typ).and_then(|(_, key)| *key) {
                Some(key) => kv.push((key.into(), Value::U32(id))),
                None => tracing::warn!(typ, id, "special token type has no GGUF key; skipped"),
            }
        }
        let flag = |typ: &str| {
            self.tokenizer_config.as_ref().and_then(|tc| tc.get(&format!("add_{typ}_token"))).and_then(|v| v.as_bool())
        };
        kv.push((names::tokenizer::ADD_BOS.into(), Value::Bool(flag("bos").unwrap_or(false))));
        kv.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(flag("eos").unwrap_or(false))));
        if let Some(sep) = flag("sep") {
            kv.push((names::tokenizer::ADD_SEP.into(), Value::Bool(sep)));
        }
        match self.chat_template(template_source) {
            None => {}
            Some(ChatTemplate::Single(t)) => kv.push(("tokenizer.chat_template".into(), Value::String(t))),
            Some(ChatTemplate::Named(list)) => {
                // gguf-py writes each named variant, the list of names, then the default.
                let clean = |n: &str| -> String {
                    n.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
                };
                let mut default = None;
                let mut names = Vec::new();
                for (name, template) in &list {
                    let name = clean(name);
                    if name.is_empty() {
                        continue;
                    }
                    if name == "default" {
                        default = Some(template.clone());
                    } else if !names.contains(&name) {
                        kv.push((format!("tokenizer.chat_template.{name}"), Value::String(template.clone())));
                        names.push(name);
                    }
                }
                if !names.is_empty() {
                    kv.push((
                        "tokenizer.chat_templates".into(),
                        Value::Array(ValueType::String, names.into_iter().map(Value::String).collect()),
                    ));
                }
                if let Some(t) = default {
                    kv.push(("tokenizer.chat_template".into(), Value::String(t)));
                }
            }
        }
        Ok(kv)
    }
}

/// Only the Qwen2 split regex (followed by a ByteLevel step) maps to llama.cpp's "qwen2".
fn check_pre_tokenizer(file: &str, pre: Option<&serde_json::Value>) -> Result<(), TokenizerError> {
    let unsupported = |found: String| TokenizerError::UnsupportedPreTokenizer { file: file.to_string(), found };
    let Some(pre) = pre else {
        return Err(unsupported("(none)".into()));
    };
    let steps: Vec<&serde_json::Value> = match pre.get("type").and_then(|t| t.as_str()) {
        Some("Sequence") => match pre.get("pretokenizers").and_then(|p| p.as_array()) {
            Some(a) => a.iter().collect(),
            None => return Err(unsupported("Sequence without pretokenizers".into())),
        },
        _ => vec![pre],
    };
    let regex = steps.iter().find_map(|s| {
        (s.get("type")?.as_str()? == "Split").then(|| s.get("pattern")?.get("Regex")?.as_str()).flatten()
    });
    let byte_level = steps.iter().any(|s| s.get("type").and_then(|t| t.as_str()) == Some("ByteLevel"));
    match regex {
        Some(r) if r == QWEN2_PRETOKENIZER_REGEX && byte_level => Ok(()),
        Some(r) => Err(unsupported(format!("split regex {r:?}"))),
        None => Err(unsupported(pre.to_string().chars().take(200).collect())),
    }
}
