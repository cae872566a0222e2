#version 450
// F32 weight rows · f32 input rows (the CPU's f32 linear layer: products rounded to f32 and summed in f32);
// only the order of the sum differs (64 strided partial sums, then a tree). Workgroup (r, c) makes output
// c·rows + r: matrix × vector for one input row, matrix × matrix for several.

layout(local_size_x = 64) in;

// Weight rows of `cols` floats, back to back.
layout(std430, binding = 0) readonly buffer Weights { float w[]; };
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
        acc += w[at] * x[col * p.cols + i];
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
