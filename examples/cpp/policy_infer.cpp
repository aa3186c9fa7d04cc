// policy_infer: runs a dqnkit TorchScript policy (policy.pt) from C++ with LibTorch.
//
//   policy_infer POLICY.pt [OBS_FILE]
//
// Reads observations, one per line as whitespace-separated numbers (the flattened
// observation), from OBS_FILE or stdin, runs them as one batch [B, *obs_shape] and prints
//   # dqnkit metadata: {...the contract JSON stored in the artifact...}
//   ACTION Q_0 Q_1 ... Q_{A-1}        (one line per observation)
// Exit status 0 on success, 1 on bad input or a model that cannot be loaded.

#include <torch/script.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

const char* kMetadataFile = "dqnkit.json";

// The position just after `"key":` and any spaces, in dqnkit's flat JSON (no nesting needed).
size_t value_position(const std::string& json, const std::string& key) {
  const std::string quoted = "\"" + key + "\":";
  size_t at = json.find(quoted);
  if (at == std::string::npos) {
    throw std::runtime_error("metadata has no \"" + key + "\"");
  }
  at += quoted.size();
  while (at < json.size() && json[at] == ' ') ++at;
  return at;
}

std::vector<int64_t> read_shape(const std::string& json) {
  size_t at = value_position(json, "obs_shape");
  const size_t end = json.find(']', at);
  if (json[at] != '[' || end == std::string::npos) {
    throw std::runtime_error("metadata obs_shape is not a list");
  }
  std::string inner = json.substr(at + 1, end - at - 1);
  for (char& c : inner) {
    if (c == ',') c = ' ';
  }
  std::istringstream in(inner);
  std::vector<int64_t> shape;
  int64_t d = 0;
  while (in >> d) shape.push_back(d);
  return shape;
}

torch::Dtype read_dtype(const std::string& json) {
  size_t at = value_position(json, "obs_dtype");
  const size_t end = json.find('"', at + 1);
  const std::string name = json.substr(at + 1, end - at - 1);
  if (name == "float32") return torch::kFloat32;
  if (name == "float64") return torch::kFloat64;
  if (name == "uint8") return torch::kUInt8;
  throw std::runtime_error("unsupported obs_dtype " + name);
}

std::vector<std::vector<double>> read_observations(std::istream& in) {
  std::vector<std::vector<double>> rows;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<double> row;
    double v = 0.0;
    while (fields >> v) row.push_back(v);
    if (!fields.eof()) throw std::runtime_error("not a number in line: " + line);
    if (!row.empty()) rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: policy_infer POLICY.pt [OBS_FILE]  (observations on stdin without it)\n";
    return 1;
  }
  try {
    torch::jit::ExtraFilesMap extra{{kMetadataFile, ""}};
    torch::jit::Module module = torch::jit::load(argv[1], torch::kCPU, extra);
    module.eval();
    const std::string metadata = extra[kMetadataFile];
    if (metadata.empty()) throw std::runtime_error("no dqnkit.json in the artifact");
    std::cout << "# dqnkit metadata: " << metadata << "\n";

    const std::vector<int64_t> obs_shape = read_shape(metadata);
    int64_t obs_size = 1;
    for (int64_t d : obs_shape) obs_size *= d;

    std::vector<std::vector<double>> rows;
    if (argc == 3 && std::string(argv[2]) != "-") {
      std::ifstream file(argv[2]);
      if (!file) throw std::runtime_error(std::string("cannot open ") + argv[2]);
      rows = read_observations(file);
    } else {
      rows = read_observations(std::cin);
    }
    if (rows.empty()) return 0;

    std::vector<double> flat;
    flat.reserve(rows.size() * obs_size);
    for (const auto& row : rows) {
      if (static_cast<int64_t>(row.size()) != obs_size) {
        throw std::runtime_error("an observation has " + std::to_string(row.size()) +
                                 " numbers, the policy takes " + std::to_string(obs_size));
      }
      flat.insert(flat.end(), row.begin(), row.end());
    }
    std::vector<int64_t> batch_shape{static_cast<int64_t>(rows.size())};
    batch_shape.insert(batch_shape.end(), obs_shape.begin(), obs_shape.end());
    torch::Tensor obs = torch::from_blob(flat.data(), batch_shape, torch::kFloat64)
                            .to(read_dtype(metadata));

    torch::NoGradGuard no_grad;
    auto outputs = module.forward({obs}).toTuple();
    torch::Tensor q = outputs->elements()[0].toTensor().contiguous();
    torch::Tensor action = outputs->elements()[1].toTensor().contiguous();
    auto q_acc = q.accessor<float, 2>();
    auto a_acc = action.accessor<int64_t, 1>();
    for (int64_t i = 0; i < q.size(0); ++i) {
      std::printf("%lld", static_cast<long long>(a_acc[i]));
      for (int64_t j = 0; j < q.size(1); ++j) std::printf(" %.9g", q_acc[i][j]);
      std::printf("\n");
    }
  } catch (const std::exception& error) {
    std::cerr << "policy_infer: error: " << error.what() << "\n";
    return 1;
  }
  return 0;
}
