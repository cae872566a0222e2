#version 450
#extension GL_GOOGLE_include_directive : require
// gate = silu(gate) · up in place (the FFN's SwiGLU), the CPU's arithmetic exactly (scalar::silu_mul):
// silu(g) = g / (1 + exp_f32(−g)) with the CPU's exp and an exact division: the CPU's bits.

layout(local_size_x = 256) in;

layout(std430, binding = 0) buffer Gate { float g[]; };
layout(std430, binding = 1) readonly buffer Up { float u[]; };

layout(push_constant) uniform Params {
    uint n;
} p;

#include "exact.glsl"

void main() {
    const uint i = gl_GlobalInvocationID.x;
    if (i < p.n) {
        const float x = g[i];
        precise float den = 1.0 + exp_f32(-x);
        precise float v = div_rn(x, den) * u[i];
        g[i] = v;
    }
}
