#version 450
// Attention scores over f32 queries and keys (the ViT's fresh keys, a prompt's), the CPU's arithmetic
// exactly (attention::key_scores_scalar, then · scale): s = Σ_e q_e · k_e in order, one correctly rounded
// multiply and add each, then s · scale. Workgroup (key block, query i, head h); query head h reads KV
// head h / (heads / kv_heads). Scores go to [heads, nq, nk]; with causal masking (first ≠ 0xFFFFFFFF)
// query i sits at position first + i and keys past it are not computed (the softmax never reads them).
// Queries, keys and values may share one buffer ([n, 3c] rows of q | k | v): offsets and row strides.

layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
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
    uint first;
    float scale;
} p;

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
    const uint kb = p.k_off + j * p.k_stride + g * p.d;
    precise float acc = 0.0;
    for (uint e = 0u; e < p.d; e++) {
        acc = acc + q[qb + e] * k[kb + e];
    }
    precise float scaled = acc * p.scale;
    s[(h * p.nq + i) * p.nk + j] = scaled;
}
