#version 450
// One query position's attention over an f16 KV cache on the device (decoding): for each query head h (one
// workgroup), its KV head h / (heads / kv_heads) (GQA); scores s_j = (q · k_j) · scale over the `positions`
// cached rows, softmax (minus the max, Vulkan's exp, one sum), then Σ_j p_j · v_j. Keys and values are
// stored as the CPU's KvCache stores them: per KV head, `positions` rows of `d` halves, back to back.

layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Query { float q[]; };       // [heads, d]
layout(std430, binding = 1) readonly buffer Keys { uint k[]; };         // [kv_heads, positions, d] halves
layout(std430, binding = 2) readonly buffer Values { uint v[]; };       // [kv_heads, positions, d] halves
layout(std430, binding = 3) buffer Scores { float s[]; };               // [heads, positions] scratch
layout(std430, binding = 4) writeonly buffer Output { float o[]; };     // [heads, d]

layout(push_constant) uniform Params {
    uint heads;
    uint kv_heads;
    uint d;
    uint positions;
    float scale;
} p;

shared float red[64];

float half_at(uint word_buffer_is_k, uint index) {
    const uint word = (word_buffer_is_k != 0u) ? k[index >> 1u] : v[index >> 1u];
    return unpackHalf2x16(word >> (16u * (index & 1u))).x;
}

void main() {
    const uint t = gl_LocalInvocationID.x;
    const uint h = gl_WorkGroupID.x;
    const uint g = h / (p.heads / p.kv_heads);
    const uint kv0 = g * p.positions * p.d;
    const uint s0 = h * p.positions;
    // Scores, and each thread's largest.
    float m = -3.402823466e38;
    for (uint j = t; j < p.positions; j += 64u) {
        float acc = 0.0;
        for (uint e = 0u; e < p.d; e++) {
            acc += q[h * p.d + e] * half_at(1u, kv0 + j * p.d + e);
        }
        const float sj = acc * p.scale;
        s[s0 + j] = sj;
        m = max(m, sj);
    }
    red[t] = m;
    barrier();
    for (uint w = 32u; w > 0u; w >>= 1u) {
        if (t < w) {
            red[t] = max(red[t], red[t + w]);
        }
        barrier();
    }
    const float mx = red[0];
    barrier();
    // Weights e^(s − max) and their sum.
    float sum = 0.0;
    for (uint j = t; j < p.positions; j += 64u) {
        const float e = exp(s[s0 + j] - mx);
        s[s0 + j] = e;
        sum += e;
    }
    memoryBarrierBuffer();  // the weights, for the other threads' value mixes after the barriers below
    red[t] = sum;
    barrier();
    for (uint w = 32u; w > 0u; w >>= 1u) {
        if (t < w) {
            red[t] += red[t + w];
        }
        barrier();
    }
    const float total = red[0];
    // The value mix: each thread some of the d outputs, over every position (the scores it reads were
    // written by other threads before the barriers above).
    for (uint e = t; e < p.d; e += 64u) {
        float acc = 0.0;
        for (uint j = 0u; j < p.positions; j++) {
            acc += s[s0 + j] * half_at(0u, kv0 + j * p.d + e);
        }
        o[h * p.d + e] = acc / total;
    }
}
