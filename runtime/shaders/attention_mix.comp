#version 450
#extension GL_GOOGLE_include_directive : require
// The softmax-weighted sum of f32 or f16 values, the CPU's arithmetic exactly (attention::mix_rows_scalar,
// which its f16 paths equal): out_e = Σ_j p_j · v_je over the visible keys in order, from 0, one correctly
// rounded multiply and add each; f16 values converted exactly (exact.glsl).
// Workgroup (element block, query i, head h); p from the softmax over [heads, nq, nk]; out is [nq, heads, d].

layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Scores { float s[]; };
layout(std430, binding = 1) readonly buffer V { uint v[]; };
layout(std430, binding = 2) writeonly buffer Output { float o[]; };

layout(push_constant) uniform Params {
    uint nq;
    uint nk;
    uint heads;
    uint kv_heads;
    uint d;
    uint v_off;
    uint v_stride;
    uint v_head_stride;
    uint kv_f16;  // 1: values are f16
    uint first;
} p;

#include "exact.glsl"

float value_at(uint index) {
    if (p.kv_f16 != 0u) {
        return f16_to_f32((v[index >> 1u] >> (16u * (index & 1u))) & 0xFFFFu);
    }
    return uintBitsToFloat(v[index]);
}

void main() {
    const uint e = gl_GlobalInvocationID.x;
    const uint i = gl_WorkGroupID.y;
    const uint h = gl_WorkGroupID.z;
    if (e >= p.d) {
        return;
    }
    uint visible = p.nk;
    if (p.first != 0xFFFFFFFFu) {
        visible = min(p.first + i + 1u, p.nk);
    }
    const uint g = h / (p.heads / p.kv_heads);
    const uint sb = (h * p.nq + i) * p.nk;
    const uint vb = p.v_off + g * p.v_head_stride + e;
    precise float acc = 0.0;
    for (uint j = 0u; j < visible; j++) {
        acc = acc + s[sb + j] * value_at(vb + j * p.v_stride);
    }
    o[(i * p.heads + h) * p.d + e] = acc;
}
