//! `sail-edge quantize`: GGUF → GGUF at another mix, for language-model and mmproj files alike.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use runtime::gguf::names;
use runtime::gguf::{GgufFile, GgufWriter, TensorSpec, Value};
use runtime::{quant, GgmlType};

use crate::pipeline::{write_tensors, PlannedTensor, SourceError, TensorSource};
use crate::recipe::{lm_tensor_type, vision_tensor_type, Mix, ModelShape};
use crate::Error;

/// The `general.quantization_version` ggml writes today (`GGML_QNT_VERSION`).
pub const QUANTIZATION_VERSION: u32 = 2;

#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    pub mix: Mix,
    /// Type of vision linear weights in mmproj files; default from the mix (Q8_0 for quantized mixes).
    pub vision_type: Option<GgmlType>,
    /// Allow re-quantizing tensors that are already quantized (lossy twice), as llama-quantize's flag.
    pub allow_requantize: bool,
    pub cancel: Option<Arc<AtomicBool>>,
}

impl QuantizeOptions {
    pub fn new(mix: Mix) -> QuantizeOptions {
        QuantizeOptions { mix, vision_type: None, allow_requantize: false, cancel: None }
    }
}

/// What a write produced, for the closing summary line.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeSummary {
    pub tensors: usize,
    pub elements: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub elapsed: Duration,
}

/// Whether a GGUF holds a vision tower + projector (mmproj) rather than a language model.
pub fn is_mmproj(file: &GgufFile) -> bool {
    file.header().architecture() == Some(names::arch::CLIP)
}

/// The model facts the LM recipe needs, read from the file's metadata.
pub fn model_shape(file: &GgufFile) -> Result<ModelShape, Error> {
    let arch = file.header().architecture().ok_or_else(|| Error::Input {
        path: file.path().to_path_buf(),
        message: "metadata has no 'general.architecture'".into(),
    })?;
    let n_layers = file.get(&format!("{arch}.block_count")).and_then(Value::as_u64).ok_or_else(|| Error::Input {
        path: file.path().to_path_buf(),
        message: format!("metadata has no integer '{arch}.block_count'"),
    })?;
    let n_experts = file.get(&format!("{arch}.expert_count")).and_then(Value::as_u64).unwrap_or(0);
    Ok(ModelShape {
        n_layers: n_layers as u32,
        has_output: file.header().tensor(names::tensor::OUTPUT).is_some(),
        n_experts: n_experts as u32,
    })
}

/// Re-quantize `input` into `output` (written atomically).
pub fn quantize_file(
    input: &Path,
    output: &Path,
    options: &QuantizeOptions,
    progress: &ProgressBar,
) -> Result<QuantizeSummary, Error> {
    let start = Instant::now();
    let file = GgufFile::open(input)?;
    if input.canonicalize().ok().is_some_and(|i| output.canonicalize().ok() == Some(i)) {
        return Err(Error::Input {
            path: output.to_path_buf(),
            message: "output would overwrite the input file".into(),
        });
    }
    let mmproj = is_mmproj(&file);
    let shape = if mmproj { None } else { Some(model_shape(&file)?) };
    let vision = options.vision_type.unwrap_or(options.mix.default_vision_type());

    let mut plan = Vec::with_capacity(file.tensors().len());
    for info in file.tensors() {
        let ty = match &shape {
            Some(s) => lm_tensor_type(options.mix, &info.name, &info.dims, s, info.ty),
            None => vision_tensor_type(vision, &info.name, &info.dims, info.ty),
        };
        if ty != info.ty && info.ty.is_quantized() && !options.allow_requantize {
            return Err(Error::Input {
                path: input.to_path_buf(),
                message: format!(
                    "tensor '{}' is already {}; re-quantizing it to {ty} compounds the error \
                     (convert from the original checkpoint, or pass --allow-requantize)",
                    info.name, info.ty
                ),
            });
        }
        plan.push(PlannedTensor::single(TensorSpec::new(info.name.clone(), info.dims.clone(), ty), info.name.clone()));
    }

    let mut metadata: Vec<(String, Value)> = file
        .metadata()
        .iter()
        .filter(|(k, _)| k != names::general::FILE_TYPE && k != names::general::QUANTIZATION_VERSION)
        .cloned()
        .collect();
    let file_type = match mmproj {
        true => Mix::for_uniform_type(vision).unwrap_or(options.mix),
        false => options.mix,
    };
    metadata.push((names::general::FILE_TYPE.into(), Value::U32(file_type.file_type_id())));
    metadata.push((names::general::QUANTIZATION_VERSION.into(), Value::U32(QUANTIZATION_VERSION)));

    let elements: u64 = plan.iter().map(|p| p.spec.n_elements()).sum();
    progress.set_length(elements);
    let mut writer = GgufWriter::create(output, &metadata, plan.iter().map(|p| p.spec.clone()).collect())?;
    if let Some(c) = &options.cancel {
        writer = writer.with_cancel_flag(c.clone());
    }
    write_tensors(&mut writer, &plan, &GgufSource(&file), progress)?;
    let bytes_out = writer.finish()?;
    Ok(QuantizeSummary {
        tensors: plan.len(),
        elements,
        bytes_in: file.file_size(),
        bytes_out,
        elapsed: start.elapsed(),
    })
}

/// A mapped GGUF file as a tensor source.
pub struct GgufSource<'a>(pub &'a GgufFile);

impl GgufSource<'_> {
    fn rows(&self, name: &str, row0: u64, n: u64) -> Result<(&runtime::gguf::TensorInfo, usize, usize), SourceError> {
        let info = self.0.tensor_info(name)?;
        let row_bytes = info.ty.row_size(info.dims[0] as usize).ok_or("row length is not a whole number of blocks")?;
        if row0 + n > info.n_rows() {
            return Err(format!("rows {row0}..{} of {}", row0 + n, info.n_rows()).into());
        }
        Ok((info, row0 as usize * row_bytes, n as usize * row_bytes))
    }
}

impl TensorSource for GgufSource<'_> {
    fn stored_type(&self, name: &str) -> Result<Option<GgmlType>, SourceError> {
        Ok(Some(self.0.tensor_info(name)?.ty))
    }

    fn raw_rows(&self, name: &str, row0: u64, n: u64) -> Result<Cow<'_, [u8]>, SourceError> {
        let (info, start, len) = self.rows(name, row0, n)?;
        Ok(Cow::Borrowed(&self.0.data(info)[start..start + len]))
    }

    fn rows_f32(&self, name: &str, row0: u64, n: u64, out: &mut Vec<f32>) -> Result<(), SourceError> {
        let (info, start, len) = self.rows(name, row0, n)?;
        out.resize((n * info.dims[0]) as usize, 0.0);
        quant::dequantize_rows(info.ty, &self.0.data(info)[start..start + len], info.dims[0] as usize, out)?;
        Ok(())
    }

    fn release(&self, name: &str, row0: u64, n: u64) {
        if let Ok((info, start, len)) = self.rows(name, row0, n) {
            self.0.release(info, start, len);
        }
    }
}
