#version 450
#extension GL_GOOGLE_include_directive : require
// Attention scores of f32 queries over f32 or f16 keys (the ViT's fresh keys; a KV cache on the device),
// the arithmetic of the CPU's tiled path (attention::key_scores_scalar, then · scale): s = Σ_e q_e · k_e in
// order, one correctly rounded multiply and add each, then s · scale. The CPU takes that path for f32 keys
// and for blocks of at least 8 score rows (prompts), so there these are its bits; for a few rows of f16 keys
// (decoding) the CPU's dot runs in SIMD lanes, with fused multiply-adds on x86, and the two agree within the
// reordered-sum bound. Workgroup (key block, query i, head h); query head h reads KV
// head h / (heads / kv_heads). Scores go to [heads, nq, nk]; with causal masking (first ≠ 0xFFFFFFFF)
// query i sits at position first + i and keys past it are not computed (the softmax never reads them).
// Queries, keys and values may share one buffer ([n, 3c] rows of q | k | v): offsets, row and head strides
// (in elements). f16 keys are halves, two to a word, converted exactly (exact.glsl).

layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer K { uint k[]; };
layout(std430, binding = 2) writeonly buffer Scores { float s[]; };

layout(push_constant) uniform Params {
    uint nq;
    uint nk;
    uint heads;
    uint kv_heads;
    uint d;
    uint q_off;
    uint q_stride;
    uint k_off;
    uint k_stride;
    uint k_head_stride;
    uint kv_f16;  // 1: keys are f16
    uint first;
    float scale;
} p;

#include "exact.glsl"

float key_at(uint index) {
    if (p.kv_f16 != 0u) {
        return f16_to_f32((k[index >> 1u] >> (16u * (index & 1u))) & 0xFFFFu);
    }
    return uintBitsToFloat(k[index]);
}

void main() {
    const uint j = gl_GlobalInvocationID.x;
    const uint i = gl_WorkGroupID.y;
    const uint h = gl_WorkGroupID.z;
    if (j >= p.nk) {
        return;
    }
    if (p.first != 0xFFFFFFFFu && j > p.first + i) {
        return;
    }
    const uint g = h / (p.heads / p.kv_heads);
    const uint qb = p.q_off + i * p.q_stride + h * p.d;
    const uint kb = p.k_off + j * p.k_stride + g * p.k_head_stride;
    precise float acc = 0.0;
    for (uint e = 0u; e < p.d; e++) {
        acc = acc + q[qb + e] * key_at(kb + e);
    }
    precise float scaled = acc * p.scale;
    s[(h * p.nq + i) * p.nk + j] = scaled;
}
