#version 450
#extension GL_GOOGLE_include_directive : require
// f32 rows → Q8_K activation super-blocks on the device (for Q4_K and Q6_K weights), the CPU's arithmetic
// exactly (kernels::kquants::quantize_q8_k_activations, ggml's quantize_row_q8_K_ref): max = the element
// of largest magnitude (the first on ties, sign kept), iscale = −127 / max, q = min(127, round-half-even(
// iscale · x)), d = 1 / iscale, the sums of each 16 quants; an all-zero block is all zeros. Divisions exact
// (exact.glsl): the CPU's quants, scales and sums. One thread per super-block; the output is laid out as
// the mat_vec_q4_k / mat_vec_q6_k shaders read it (64 words of 4 signed bytes, one f32 scale, 16 i32 sums).

layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Input { float x[]; };
layout(std430, binding = 1) writeonly buffer Quants { uint xq[]; };
layout(std430, binding = 2) writeonly buffer Scales { float xd[]; };
layout(std430, binding = 3) writeonly buffer Sums { int xs[]; };

layout(push_constant) uniform Params {
    uint blocks;  // super-blocks in all (rows × super-blocks per row)
} p;

#include "exact.glsl"

void main() {
    const uint b = gl_GlobalInvocationID.x;
    if (b >= p.blocks) {
        return;
    }
    const uint base = b * 256u;
    float mx = 0.0;
    float amax = 0.0;
    for (uint i = 0u; i < 256u; i++) {
        const float v = x[base + i];
        if (abs(v) > amax) {
            amax = abs(v);
            mx = v;
        }
    }
    if (amax == 0.0) {
        for (uint w = 0u; w < 64u; w++) {
            xq[b * 64u + w] = 0u;
        }
        for (uint j = 0u; j < 16u; j++) {
            xs[b * 16u + j] = 0;
        }
        xd[b] = 0.0;
        return;
    }
    const float iscale = div_rn(-127.0, mx);
    for (uint j = 0u; j < 16u; j++) {
        int sum = 0;
        for (uint w = 0u; w < 4u; w++) {
            uint word = 0u;
            for (uint k = 0u; k < 4u; k++) {
                precise float t = iscale * x[base + j * 16u + w * 4u + k] + ROUND_MAGIC;
                const int q = min(127, int(floatBitsToUint(t) & 0x7FFFFFu) - 0x400000);
                sum += q;
                word |= (uint(q) & 0xFFu) << (8u * k);
            }
            xq[b * 64u + j * 4u + w] = word;
        }
        xs[b * 16u + j] = sum;
    }
    xd[b] = div_rn(1.0, iscale);
}
