#version 450
#extension GL_GOOGLE_include_directive : require
// f32 rows → Q8_0 activation blocks on the device, the CPU's arithmetic exactly
// (scalar::quantize_q8_0_activations): amax = max |x| over the block's 32 values, d = amax / 127,
// q = round-half-even(x · (127 / amax)), d kept as its f16 rounding. The divisions and the f16 rounding are
// exact.glsl's, so the quants and scales are the CPU's and the matrix shaders after this give the CPU's
// bits with no host round trip. One thread per block; the output is laid out as the mat_vec shaders read
// it (8 words of 4 signed bytes, one f32 scale per block).

layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Input { float x[]; };
layout(std430, binding = 1) writeonly buffer Quants { uint xq[]; };
layout(std430, binding = 2) writeonly buffer Scales { float xd[]; };

layout(push_constant) uniform Params {
    uint blocks;  // blocks in all (rows × blocks per row; rows are whole blocks)
} p;

#include "exact.glsl"

void main() {
    const uint b = gl_GlobalInvocationID.x;
    if (b >= p.blocks) {
        return;
    }
    const uint base = b * 32u;
    float amax = 0.0;
    for (uint i = 0u; i < 32u; i++) {
        amax = max(amax, abs(x[base + i]));
    }
    const float d = div_rn(amax, 127.0);
    const float id = (amax != 0.0) ? div_rn(127.0, amax) : 0.0;
    for (uint w = 0u; w < 8u; w++) {
        uint word = 0u;
        for (uint k = 0u; k < 4u; k++) {
            precise float t = x[base + w * 4u + k] * id + ROUND_MAGIC;
            precise float r = t - ROUND_MAGIC;
            word |= (uint(int(r)) & 0xFFu) << (8u * k);
        }
        xq[b * 8u + w] = word;
    }
    xd[b] = f16_to_f32(f32_to_f16_rne(d));
}
