#version 450
// F16 weight rows · one f32 activation row, one row per workgroup (kquants::dot_f16's math: each weight
// widened exactly to f32, its product with x rounded to f32 and summed in f32); only the order of the sum
// differs (64 strided partial sums, then a tree).

layout(local_size_x = 64) in;

// Weight rows of `cols` halves, back to back, two per word (zero-padded to 4 bytes).
layout(std430, binding = 0) readonly buffer Weights { uint w[]; };
layout(std430, binding = 1) readonly buffer Input { float x[]; };
layout(std430, binding = 2) writeonly buffer Output { float o[]; };

layout(push_constant) uniform Params {
    uint cols;
} p;

shared float partial[64];

void main() {
    const uint t = gl_LocalInvocationID.x;
    const uint row = gl_WorkGroupID.x;
    float acc = 0.0;
    for (uint i = t; i < p.cols; i += 64u) {
        const uint at = row * p.cols + i;
        const float wv = unpackHalf2x16(w[at >> 1u] >> (16u * (at & 1u))).x;
        acc += wv * x[i];
    }
    partial[t] = acc;
    barrier();
    for (uint k = 32u; k > 0u; k >>= 1u) {
        if (t < k) {
            partial[t] += partial[t + k];
        }
        barrier();
    }
    if (t == 0u) {
        o[row] = partial[0];
    }
}
