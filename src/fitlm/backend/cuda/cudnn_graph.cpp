#include "fitlm/backend/cuda/cudnn_graph.h"

#include <algorithm>

namespace fitlm::cuda::cudnn {

void check(cudnnStatus_t status, const char* what) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  char last[1024] = {0};
  cudnnGetLastErrorString(last, sizeof(last));
  throw CudnnUnsupported(std::string("cuDNN ") + what + ": " + cudnnGetErrorString(status) +
                         (last[0] ? std::string(" (") + last + ")" : std::string()));
}

Descriptor::Descriptor(cudnnBackendDescriptorType_t type) {
  check(cudnnBackendCreateDescriptor(type, &d_), "create descriptor");
}

Descriptor::~Descriptor() {
  if (d_) cudnnBackendDestroyDescriptor(d_);
}

Descriptor& Descriptor::set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
                            int64_t count, const void* values) {
  check(cudnnBackendSetAttribute(d_, name, type, count, values), "set attribute");
  return *this;
}

Descriptor& Descriptor::set(cudnnBackendAttributeName_t name, const Descriptor& d) {
  cudnnBackendDescriptor_t raw = d.get();
  return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw);
}

Descriptor& Descriptor::set(cudnnBackendAttributeName_t name, int64_t value) {
  return set(name, CUDNN_TYPE_INT64, 1, &value);
}

Descriptor& Descriptor::set(cudnnBackendAttributeName_t name, cudnnDataType_t value) {
  return set(name, CUDNN_TYPE_DATA_TYPE, 1, &value);
}

Descriptor& Descriptor::finalize() {
  check(cudnnBackendFinalize(d_), "finalize");
  return *this;
}

namespace {

std::unique_ptr<Descriptor> make_tensor(int64_t uid, cudnnDataType_t dtype, const Layout& l,
                                        bool is_virtual, bool by_value, const Descriptor* ragged) {
  auto d = std::make_unique<Descriptor>(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const int64_t n = static_cast<int64_t>(l.dims.size());
  d->set(CUDNN_ATTR_TENSOR_DATA_TYPE, dtype)
      .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, n, l.dims.data())
      .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, n, l.strides.data())
      .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, uid)
      .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, int64_t{16});
  const bool v = is_virtual, b = by_value;
  d->set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &v);
  if (by_value) d->set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &b);
  if (ragged) d->set(CUDNN_ATTR_TENSOR_RAGGED_OFFSET_DESC, *ragged);
  d->finalize();
  return d;
}

// The engine behind a heuristics result: its global index and numerical notes.
struct EngineInfo {
  int64_t index = -1;
  bool nondeterministic = false;
  std::string notes;
};

EngineInfo engine_info(const Descriptor& config) {
  EngineInfo info;
  try {
    Descriptor engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
    cudnnBackendDescriptor_t raw = engine.get();
    int64_t n = 0;
    check(cudnnBackendGetAttribute(config.get(), CUDNN_ATTR_ENGINECFG_ENGINE,
                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &raw),
          "engine of a config");
    check(cudnnBackendGetAttribute(raw, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n,
                                   &info.index),
          "engine index");
    cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
    int64_t count = 0;
    check(cudnnBackendGetAttribute(raw, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                                   CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &count, notes),
          "engine numerical notes");
    for (int64_t i = 0; i < count; ++i) {
      if (notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC) info.nondeterministic = true;
      info.notes += (info.notes.empty() ? "" : ",") + std::to_string(static_cast<int>(notes[i]));
    }
  } catch (const CudnnUnsupported& e) {
    info.notes = std::string("unknown: ") + e.what();
  }
  return info;
}

}  // namespace

void GraphBuilder::tensor(int64_t uid, cudnnDataType_t dtype, const Layout& layout, bool by_value,
                          int64_t ragged) {
  const Descriptor* r = ragged >= 0 ? &t(ragged) : nullptr;
  tensors_.emplace_back(uid, make_tensor(uid, dtype, layout, false, by_value, r));
}

int64_t GraphBuilder::virtual_tensor(cudnnDataType_t dtype, const Layout& layout, int64_t ragged) {
  const int64_t uid = next_virtual_uid_++;
  const Descriptor* r = ragged >= 0 ? &t(ragged) : nullptr;
  tensors_.emplace_back(uid, make_tensor(uid, dtype, layout, true, false, r));
  return uid;
}

const Descriptor& GraphBuilder::t(int64_t uid) const {
  for (const auto& [id, d] : tensors_)
    if (id == uid) return *d;
  throw CudnnUnsupported("cuDNN graph: no tensor with uid " + std::to_string(uid));
}

void GraphBuilder::add_op(Descriptor op) {
  op.finalize();
  ops_.push_back(std::make_unique<Descriptor>(std::move(op)));
}

void GraphBuilder::pointwise(cudnnPointwiseMode_t mode, int64_t x, int64_t y, int64_t b, int64_t t_,
                             cudnnDataType_t math, int64_t axis) {
  auto pw = std::make_unique<Descriptor>(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  pw->set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode)
      .set(CUDNN_ATTR_POINTWISE_MATH_PREC, math);
  if (axis >= 0) pw->set(CUDNN_ATTR_POINTWISE_AXIS, axis);
  pw->finalize();
  Descriptor op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  op.set(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, *pw)
      .set(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, t(x))
      .set(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, t(y));
  if (b >= 0) op.set(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, t(b));
  if (t_ >= 0) op.set(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, t(t_));
  parts_.push_back(std::move(pw));
  add_op(std::move(op));
}

void GraphBuilder::matmul(int64_t a, int64_t b, int64_t c, int64_t m, int64_t n, int64_t k) {
  auto mm = std::make_unique<Descriptor>(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
  mm->set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_DATA_FLOAT).finalize();
  Descriptor op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
  op.set(CUDNN_ATTR_OPERATION_MATMUL_ADESC, t(a))
      .set(CUDNN_ATTR_OPERATION_MATMUL_BDESC, t(b))
      .set(CUDNN_ATTR_OPERATION_MATMUL_CDESC, t(c))
      .set(CUDNN_ATTR_OPERATION_MATMUL_DESC, *mm);
  if (m >= 0) op.set(CUDNN_ATTR_OPERATION_MATMUL_GEMM_M_OVERRIDE_DESC, t(m));
  if (n >= 0) op.set(CUDNN_ATTR_OPERATION_MATMUL_GEMM_N_OVERRIDE_DESC, t(n));
  if (k >= 0) op.set(CUDNN_ATTR_OPERATION_MATMUL_GEMM_K_OVERRIDE_DESC, t(k));
  parts_.push_back(std::move(mm));
  add_op(std::move(op));
}

void GraphBuilder::reduction(cudnnReduceTensorOp_t op_type, int64_t x, int64_t y) {
  auto red = std::make_unique<Descriptor>(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
  red->set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &op_type)
      .set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_DATA_FLOAT)
      .finalize();
  Descriptor op(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
  op.set(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, t(x))
      .set(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, t(y))
      .set(CUDNN_ATTR_OPERATION_REDUCTION_DESC, *red);
  parts_.push_back(std::move(red));
  add_op(std::move(op));
}

void GraphBuilder::reshape(int64_t x, int64_t y) {
  Descriptor op(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
  op.set(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, t(x)).set(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, t(y));
  add_op(std::move(op));
}

ExecutionPlan GraphBuilder::build(cudnnHandle_t handle, bool prefer_deterministic) const {
  std::vector<cudnnBackendDescriptor_t> raw_ops;
  for (const auto& op : ops_) raw_ops.push_back(op->get());
  auto graph_owner = std::make_unique<Descriptor>(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  Descriptor& graph = *graph_owner;
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle)
      .set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
           static_cast<int64_t>(raw_ops.size()), raw_ops.data())
      .finalize();

  auto heur_owner = std::make_unique<Descriptor>(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  Descriptor& heur = *heur_owner;
  const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
  heur.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph)
      .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode)
      .finalize();
  int64_t count = 0;
  check(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
        "heuristics count");
  std::vector<std::unique_ptr<Descriptor>> configs;
  std::vector<cudnnBackendDescriptor_t> raw_configs;
  for (int64_t i = 0; i < count; ++i) {
    configs.push_back(std::make_unique<Descriptor>(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
    raw_configs.push_back(configs.back()->get());
  }
  int64_t got = 0;
  if (count > 0)
    check(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                   CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, raw_configs.data()),
          "heuristics results");
  std::vector<EngineInfo> infos;
  for (int64_t i = 0; i < got; ++i) infos.push_back(engine_info(*configs[static_cast<size_t>(i)]));
  std::string reasons;
  // Pass 0 (only when asked): deterministic engines; pass 1: any engine.
  for (int pass = prefer_deterministic ? 0 : 1; pass < 2; ++pass) {
    for (int64_t i = 0; i < got; ++i) {
      const EngineInfo& info = infos[static_cast<size_t>(i)];
      if (pass == 0 && info.nondeterministic) continue;
      try {
        ExecutionPlan p;
        p.plan = std::make_unique<Descriptor>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
        p.plan->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle)
            .set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, *configs[static_cast<size_t>(i)])
            .finalize();
        int64_t n = 0;
        check(cudnnBackendGetAttribute(p.plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                       CUDNN_TYPE_INT64, 1, &n, &p.workspace_bytes),
              "workspace size");
        p.deterministic = !info.nondeterministic;
        int deterministic_candidates = 0;
        for (const EngineInfo& e : infos) deterministic_candidates += e.nondeterministic ? 0 : 1;
        p.engine = "heuristic choice " + std::to_string(i) + " of " + std::to_string(got) +
                   ", engine " + std::to_string(info.index) + " notes [" + info.notes + "]" +
                   (info.nondeterministic ? " NONDETERMINISTIC" : "") + ", " +
                   std::to_string(deterministic_candidates) + " deterministic candidates";
        p.sources.push_back(std::move(graph_owner));
        p.sources.push_back(std::move(heur_owner));
        for (auto& c : configs) p.sources.push_back(std::move(c));
        return p;
      } catch (const CudnnUnsupported& e) {
        if (pass == 1) reasons += std::string(reasons.empty() ? "" : "; ") + e.what();
      }
    }
  }
  throw CudnnUnsupported("cuDNN found no engine for the graph (" + std::to_string(got) +
                         " candidates" + (reasons.empty() ? "" : ": " + reasons) + ")");
}

void execute(cudnnHandle_t handle, const ExecutionPlan& plan, const std::vector<int64_t>& uids,
             const std::vector<void*>& pointers, void* workspace) {
  Descriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  const int64_t n = static_cast<int64_t>(uids.size());
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids.data())
      .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, pointers.data())
      .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace)
      .finalize();
  check(cudnnBackendExecute(handle, plan.plan->get(), pack.get()), "execute");
}

}  // namespace fitlm::cuda::cudnn
