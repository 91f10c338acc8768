// A small builder for cuDNN backend operation graphs (the "graph API" that cudnn_frontend wraps;
// the frontend headers are not packaged, so fitlm talks to the backend descriptors directly).
//
// Usage: add tensors (by unique id) and operations, then build() asks cuDNN's heuristics for
// engine configurations and finalizes the first one that compiles into an execution plan
// (preferring, on request, one whose numerical notes do not say NONDETERMINISTIC). A graph the
// installed cuDNN cannot fuse throws CudnnUnsupported, which callers treat as "use another
// implementation", never as a crash.
//
// Variable sequence lengths (cuDNN's "ragged" / THD layout): a tensor may carry a ragged-offset
// tensor (CUDNN_ATTR_TENSOR_RAGGED_OFFSET_DESC: int64 [b + 1] element offsets of each batch entry,
// bound at execution like any tensor), and a matmul may take M/N/K override tensors (int32 [b],
// the real extent per batch entry).
#pragma once

#include <cudnn.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fitlm::cuda::cudnn {

// cuDNN refused a graph or a call: the message carries cuDNN's own reason.
struct CudnnUnsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Owns one cudnnBackendDescriptor_t.
class Descriptor {
 public:
  explicit Descriptor(cudnnBackendDescriptorType_t type);
  ~Descriptor();
  Descriptor(Descriptor&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
  Descriptor& operator=(Descriptor&&) = delete;
  Descriptor(const Descriptor&) = delete;

  cudnnBackendDescriptor_t get() const { return d_; }
  Descriptor& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
                  const void* values);
  Descriptor& set(cudnnBackendAttributeName_t name, const Descriptor& d);  // one descriptor
  Descriptor& set(cudnnBackendAttributeName_t name, int64_t value);
  Descriptor& set(cudnnBackendAttributeName_t name, cudnnDataType_t value);
  Descriptor& finalize();

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

// Tensor dims and strides, outermost first (cuDNN wants at least 4 dims for these graphs).
struct Layout {
  std::vector<int64_t> dims, strides;
};

// The plan plus the descriptors it was made from (cuDNN may refer to them while it runs); keep
// the GraphBuilder alive alongside it too.
struct ExecutionPlan {
  std::unique_ptr<Descriptor> plan;
  std::vector<std::unique_ptr<Descriptor>> sources;  // graph, heuristics, engine configs
  int64_t workspace_bytes = 0;
  std::string engine;  // "engine <global index> (notes ...)", for logs
  // False when cuDNN lists CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC for the chosen engine (e.g. dQ
  // accumulated with atomics): two runs over the same inputs may then differ by rounding.
  bool deterministic = true;
};

class GraphBuilder {
 public:
  // A tensor the caller binds to memory at execution (by uid) or, with by_value, a host scalar.
  // ragged: uid of an already declared ragged-offset tensor for this one (-1: none).
  void tensor(int64_t uid, cudnnDataType_t dtype, const Layout& layout, bool by_value = false,
              int64_t ragged = -1);
  // A tensor that lives only inside the fused kernel; returns its (fresh) uid.
  int64_t virtual_tensor(cudnnDataType_t dtype, const Layout& layout, int64_t ragged = -1);

  // y = mode(x [, b] [, t]); t is BINARY_SELECT's condition (y = t ? x : b). axis is GEN_INDEX's.
  void pointwise(cudnnPointwiseMode_t mode, int64_t x, int64_t y, int64_t b = -1, int64_t t = -1,
                 cudnnDataType_t math = CUDNN_DATA_FLOAT, int64_t axis = -1);
  // c = a·b over the two innermost dims; m/n/k: uids of per-batch extent overrides (-1: none).
  void matmul(int64_t a, int64_t b, int64_t c, int64_t m = -1, int64_t n = -1, int64_t k = -1);
  // y = reduce(x) over the dims where y's extent is 1 (or smaller: head groups for GQA).
  void reduction(cudnnReduceTensorOp_t op, int64_t x, int64_t y);
  void reshape(int64_t x, int64_t y);  // y: same elements, another view (a transpose)

  // prefer_deterministic: take the first candidate without the NONDETERMINISTIC note that
  // builds, and only when none does, the first that builds at all.
  ExecutionPlan build(cudnnHandle_t handle, bool prefer_deterministic = false) const;

 private:
  const Descriptor& t(int64_t uid) const;
  void add_op(Descriptor op);

  std::vector<std::pair<int64_t, std::unique_ptr<Descriptor>>> tensors_;
  std::vector<std::unique_ptr<Descriptor>> parts_;  // pointwise/matmul/reduction descriptors
  std::vector<std::unique_ptr<Descriptor>> ops_;
  int64_t next_virtual_uid_ = 1000;
};

// Runs `plan` with the given (uid, pointer) bindings; by-value tensors point at host scalars.
void execute(cudnnHandle_t handle, const ExecutionPlan& plan, const std::vector<int64_t>& uids,
             const std::vector<void*>& pointers, void* workspace);

// Throws CudnnUnsupported naming `what` with cuDNN's status and last error message.
void check(cudnnStatus_t status, const char* what);

}  // namespace fitlm::cuda::cudnn
