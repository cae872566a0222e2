#version 450
// F16 weight rows · f32 input rows, one output per workgroup (kquants::dot_f16's math: each weight
// widened exactly to f32, its product with x rounded to f32 and summed in f32); only the order of the sum
// differs (64 strided partial sums, then a tree).
// Workgroup (r, c) makes output c·rows + r: matrix × vector for one input row, matrix × matrix for several
// (each workgroup reads its weight row itself; no tiling through shared memory).

layout(local_size_x = 64) in;

// Weight rows of `cols` halves, back to back, two per word (zero-padded to 4 bytes).
layout(std430, binding = 0) readonly buffer Weights { uint w[]; };
layout(std430, binding = 1) readonly buffer Input { float x[]; };
layout(std430, binding = 2) writeonly buffer Output { float o[]; };

layout(push_constant) uniform Params {
    uint cols;
    uint rows;  // weight rows: the output row stride
    uint row0;  // first weight row of this dispatch
    uint col0;  // first input row of this dispatch
    uint first; // the first row the weight buffer holds (a weight may be split over several)
} p;

shared float partial[64];

void main() {
    const uint t = gl_LocalInvocationID.x;
    const uint row = p.row0 + gl_WorkGroupID.x;
    const uint col = p.col0 + gl_WorkGroupID.y;
    float acc = 0.0;
    for (uint i = t; i < p.cols; i += 64u) {
        const uint at = (row - p.first) * p.cols + i;
        const float wv = unpackHalf2x16(w[at >> 1u] >> (16u * (at & 1u))).x;
        acc += wv * x[col * p.cols + i];
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
        o[col * p.rows + row] = partial[0];
    }
}
