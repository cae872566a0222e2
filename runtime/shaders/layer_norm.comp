#version 450
// LayerNorm with weight and bias, one row per workgroup, as kernels::layer_norm: the mean, then the mean of
// squared deviations from it (biased, like PyTorch), then ((x − mean) · (1 / sqrt(var + eps))) · w + b.
// Only the order of the two sums differs (256 strided partial sums, then a tree).

layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer Input { float x[]; };
layout(std430, binding = 1) readonly buffer Weight { float w[]; };
layout(std430, binding = 2) readonly buffer Bias { float bias[]; };
layout(std430, binding = 3) writeonly buffer Output { float o[]; };

layout(push_constant) uniform Params {
    uint d;
    float eps;
} p;

shared float partial[256];

float row_sum(float s) {
    const uint t = gl_LocalInvocationID.x;
    partial[t] = s;
    barrier();
    for (uint k = 128u; k > 0u; k >>= 1u) {
        if (t < k) {
            partial[t] += partial[t + k];
        }
        barrier();
    }
    const float total = partial[0];
    barrier();
    return total;
}

void main() {
    const uint t = gl_LocalInvocationID.x;
    const uint base = gl_WorkGroupID.x * p.d;
    float s = 0.0;
    for (uint i = t; i < p.d; i += 256u) {
        s += x[base + i];
    }
    const float mean = row_sum(s) / float(p.d);
    float q = 0.0;
    for (uint i = t; i < p.d; i += 256u) {
        const float dev = x[base + i] - mean;
        q += dev * dev;
    }
    const float inv = 1.0 / sqrt(row_sum(q) / float(p.d) + p.eps);
    for (uint i = t; i < p.d; i += 256u) {
        o[base + i] = (x[base + i] - mean) * inv * w[i] + bias[i];
    }
}
