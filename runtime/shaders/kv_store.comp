#version 450
#extension GL_GOOGLE_include_directive : require
// Append n tokens' keys or values ([n, kv_heads, d] f32) to a KV cache on the device at positions
// first…first + n − 1, in the CPU's KvCache layout (per KV head, `capacity` rows of d values back to back),
// as f32 or as f16 rounded to nearest even (quant::f32_to_f16_bits, exactly: exact.glsl). One thread per
// output word (one f32, or two halves).

layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer Src { float x[]; };
layout(std430, binding = 1) buffer Cache { uint c[]; };

layout(push_constant) uniform Params {
    uint n;
    uint kv_heads;
    uint d;
    uint capacity;
    uint first;
    uint f16;  // 1: halves
} p;

#include "exact.glsl"

void main() {
    const uint per = (p.f16 != 0u) ? 2u : 1u;
    const uint words_per_row = p.d / per;
    const uint w = gl_GlobalInvocationID.x;
    if (w >= p.n * p.kv_heads * words_per_row) {
        return;
    }
    const uint row = w / words_per_row;  // over (token, head)
    const uint e = (w % words_per_row) * per;
    const uint i = row / p.kv_heads;
    const uint g = row % p.kv_heads;
    const uint src = row * p.d + e;
    const uint dst = (g * p.capacity + p.first + i) * words_per_row + e / per;
    if (p.f16 != 0u) {
        c[dst] = f32_to_f16_rne(x[src]) | (f32_to_f16_rne(x[src + 1u]) << 16u);
    } else {
        c[dst] = floatBitsToUint(x[src]);
    }
}
