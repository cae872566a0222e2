#version 450
// RMSNorm, one row per workgroup: out = w · (x · (1 / sqrt(mean(x²) + eps))), the float steps of
// kernels::rms_norm. Only the order of the sum of squares differs (256 strided partial sums, then a tree).

layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer Input { float x[]; };
layout(std430, binding = 1) readonly buffer Weight { float w[]; };
layout(std430, binding = 2) writeonly buffer Output { float o[]; };

layout(push_constant) uniform Params {
    uint d;     // row length
    float eps;
} p;

shared float partial[256];

void main() {
    const uint t = gl_LocalInvocationID.x;
    const uint base = gl_WorkGroupID.x * p.d;
    float s = 0.0;
    for (uint i = t; i < p.d; i += 256u) {
        const float v = x[base + i];
        s += v * v;
    }
    partial[t] = s;
    barrier();
    for (uint k = 128u; k > 0u; k >>= 1u) {
        if (t < k) {
            partial[t] += partial[t + k];
        }
        barrier();
    }
    const float scale = 1.0 / sqrt(partial[0] / float(p.d) + p.eps);
    for (uint i = t; i < p.d; i += 256u) {
        o[base + i] = w[i] * (x[base + i] * scale);
    }
}
