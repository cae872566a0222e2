//! The `univl-chat` conversation format (spec §5.2) cut into the pieces a session appends one at a
//! time. The reference writes a first turn as
//!
//! ```text
//! <|im_start|>system\n{system}<|im_end|><|im_start|>user\n{images}{question}{think}<|im_end|><|im_start|>assistant\n
//! ```
//!
//! where `{images}` is `<image>\n` for one still image, `Image-1: <image>\nImage-2: <image>\n…` for several and
//! `Frame-1: <image>\n…` for video frames, and every `<image>` becomes `<img>`, 256·T `<IMG_CONTEXT>`,
//! `</img>`. A later turn continues after the previous answer with `<|im_end|><|im_start|>user\n…`.
//!
//! Text is only ever cut where the tokenizer's pre-tokenizer cuts anyway: after the letters of `user` (no
//! pre-token joins a letter to the newline that follows it) and around image blocks (their tokens are
//! inserted as ids). Each `\n` that follows such a cut is carried over and tokenized with the text after it,
//! so the ids equal those of the whole prompt tokenized at once, however the conversation was built.

/// A first turn up to the cut after `user`: what the engine prefills once and shares (see [`crate::engine`]).
pub fn system_head(system: &str) -> String {
    format!("<|im_start|>system\n{system}<|im_end|><|im_start|>user")
}

/// A later turn up to the cut after `user` (closing the previous answer first).
pub const CONTINUE_HEAD: &str = "<|im_end|><|im_start|>user";

/// What follows a cut after `user` or after an image block, carried into the next text.
pub const CARRY: &str = "\n";

/// The end of a user turn: the question (with the think suffix) and the assistant's header.
pub fn question_tail(question: &str, think_suffix: Option<&str>) -> String {
    format!("{question}{}<|im_end|><|im_start|>assistant\n", think_suffix.unwrap_or(""))
}

/// The placeholder a question may use to put images itself.
pub const IMAGE_PLACEHOLDER: &str = "<image>";

/// Still images or video frames (they are announced differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    Still,
    VideoFrame,
}

/// The label before the `index`-th image (1-based) of a turn that holds `count` images of `kind`.
pub fn image_label(kind: ImageKind, index: usize, count: usize) -> String {
    match kind {
        ImageKind::VideoFrame => format!("Frame-{index}: "),
        ImageKind::Still if count > 1 => format!("Image-{index}: "),
        ImageKind::Still => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pieces put back together are the reference's prompt strings (fixtures' `prompt` fields).
    #[test]
    fn pieces_reassemble_the_reference_prompts() {
        let sys = "S";
        let one = format!(
            "{}{CARRY}{}<image>{CARRY}{}",
            system_head(sys),
            image_label(ImageKind::Still, 1, 1),
            question_tail("Describe this image.", None)
        );
        assert_eq!(
            one,
            "<|im_start|>system\nS<|im_end|><|im_start|>user\n<image>\nDescribe this image.<|im_end|><|im_start|>assistant\n"
        );
        let frames: String =
            (1..=3).map(|i| format!("{}<image>{CARRY}", image_label(ImageKind::VideoFrame, i, 3))).collect();
        assert_eq!(frames, "Frame-1: <image>\nFrame-2: <image>\nFrame-3: <image>\n");
        assert_eq!(image_label(ImageKind::Still, 2, 2), "Image-2: ");
        assert_eq!(question_tail("q", Some(" T")), "q T<|im_end|><|im_start|>assistant\n");
    }
}
