// lite-recommend: top-K recommendations from an exported lite-export artifact, in C++.
//
//   lite-recommend ART 1193,661,914 2355 -k 5
//   lite-recommend ART --histories users.jsonl --json
//   lite-recommend ART --histories users.jsonl --bench 1000 --threads 2
//
// Exit codes: 0 ok, 1 the artifact, an id or the runtime failed, 2 a bad argument.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "lite/recommender.hpp"

namespace {

using nlohmann::json;

constexpr const char* kUsage = R"(usage: lite-recommend ARTIFACT [HISTORY ...] [options]

Top-K recommendations from a lite-export artifact (manifest.json, items.jsonl, model.onnx),
run with ONNX Runtime's C++ API; the same answers as lite_export.load(ART).recommend(...).

  HISTORY             one user's history: external item ids, oldest first, comma-separated
                      ("1193,661,914"); "" is an empty history (gets the most popular items)
  --histories FILE    histories as JSON lines, one JSON array of ids per line ("-": stdin)
  -k, --k N           items per history, 1..K of the artifact (default 10)
  --include-seen      keep the history's own items (default: excluded)
  --json              print one JSON object: per history ids, scores, titles, indices, fallback
  --engine NAME       onnxruntime (default) or tensorrt (model.plan; builds with TensorRT only)
  --graph FILE        ONNX graph (default: model.ort.onnx when present, else model.onnx)
  --threads N         ONNX Runtime intra-op threads (default: ONNX Runtime's choice)
  --no-verify         skip the sha256 check of the artifact's files
  --bench N           time N recommend() calls at batch 1, cycling through the histories, and
                      print p50/p99 (with --json: every call's milliseconds too)
  --warmup N          untimed calls before --bench (default 10)
  --inputs            print the model's inputs (item_ids, exclude_ids) as JSON, run nothing
  --version           print versions and exit
  -h, --help          this help

Exit codes: 0 ok; 1 artifact, unknown id or runtime error; 2 bad argument.
)";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::string artifact;
  std::vector<std::vector<std::string>> histories;
  int k = 10;
  bool exclude_seen = true;
  bool json = false;
  lite::Options options;
  long bench = 0;
  long warmup = 10;
  bool inputs_only = false;
};

long parse_int(const std::string& flag, const std::string& value, long lo, long hi) {
  std::size_t used = 0;
  long v = 0;
  try {
    v = std::stol(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != value.size() || value.empty() || v < lo || v > hi) {
    throw UsageError(flag + " needs an integer between " + std::to_string(lo) + " and " +
                     std::to_string(hi) + ", got '" + value + "'");
  }
  return v;
}

std::vector<std::string> split_ids(const std::string& text) {
  std::vector<std::string> ids;
  if (text.empty()) return ids;
  std::stringstream ss(text);
  std::string id;
  while (std::getline(ss, id, ',')) {
    if (id.empty()) throw UsageError("empty item id in history '" + text + "'");
    ids.push_back(id);
  }
  if (text.back() == ',') throw UsageError("empty item id in history '" + text + "'");
  return ids;
}

void read_histories(const std::string& file, std::vector<std::vector<std::string>>& out) {
  std::ifstream f;
  std::istream* in = &std::cin;
  if (file != "-") {
    f.open(file);
    if (!f) throw UsageError("--histories: cannot read " + file);
    in = &f;
  }
  std::string line;
  for (std::size_t lineno = 1; std::getline(*in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const json row = json::parse(line, nullptr, false);
    bool ok = row.is_array();
    std::vector<std::string> ids;
    for (const auto& v : row) {
      if (!ok) break;
      if (v.is_string()) {
        ids.push_back(v.get<std::string>());
      } else if (v.is_number_integer()) {
        ids.push_back(std::to_string(v.get<long long>()));
      } else {
        ok = false;
      }
    }
    if (!ok) {
      throw UsageError(file + " line " + std::to_string(lineno) +
                       ": expected a JSON array of item ids like [\"1193\", \"661\"]");
    }
    out.push_back(std::move(ids));
  }
}

Args parse_args(int argc, char** argv) {
  Args a;
  bool histories_flag = false, only_positional = false;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (only_positional) {
      positional.push_back(arg);
      continue;
    }
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (arg == "--version") {
      std::cout << "lite-recommend (lite-export artifact format " << lite::kArtifactVersion
                << "), onnxruntime " << lite::onnxruntime_version() << ", tensorrt "
                << (lite::tensorrt_built() ? "built in" : "not built") << '\n';
      std::exit(0);
    } else if (arg == "-k" || arg == "--k") {
      a.k = static_cast<int>(parse_int(arg, value(), 1, 1 << 20));
    } else if (arg == "--include-seen") {
      a.exclude_seen = false;
    } else if (arg == "--json") {
      a.json = true;
    } else if (arg == "--histories") {
      read_histories(value(), a.histories);
      histories_flag = true;
    } else if (arg == "--engine") {
      a.options.engine = value();
    } else if (arg == "--graph") {
      a.options.graph = value();
    } else if (arg == "--threads") {
      a.options.threads = static_cast<int>(parse_int(arg, value(), 1, 1024));
    } else if (arg == "--inputs") {
      a.inputs_only = true;
    } else if (arg == "--no-verify") {
      a.options.verify = false;
    } else if (arg == "--bench") {
      a.bench = parse_int(arg, value(), 1, 100000000);
    } else if (arg == "--warmup") {
      a.warmup = parse_int(arg, value(), 0, 100000000);
    } else if (arg == "--") {
      only_positional = true;  // what follows is ARTIFACT / HISTORY even if it starts with '-'
    } else if (arg.size() > 1 && arg[0] == '-') {
      throw UsageError("unknown option " + arg + " (see --help)");
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.empty()) throw UsageError("missing ARTIFACT (the directory `lite export` wrote)");
  a.artifact = positional.front();
  for (std::size_t i = 1; i < positional.size(); ++i) {
    a.histories.push_back(split_ids(positional[i]));
  }
  if (a.histories.empty() && !histories_flag) {
    throw UsageError("no histories: pass HISTORY arguments (\"1193,661\") or --histories FILE");
  }
  if (a.bench > 0 && a.histories.empty()) throw UsageError("--bench needs at least one history");
  return a;
}

// numpy.percentile's default (linear interpolation between closest ranks).
double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q / 100.0 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const auto hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

int run_bench(lite::Recommender& rec, const Args& a) {
  std::vector<double> total_ms, model_ms;
  total_ms.reserve(static_cast<std::size_t>(a.bench));
  model_ms.reserve(static_cast<std::size_t>(a.bench));
  const auto n = a.histories.size();
  for (long i = 0; i < a.warmup; ++i) rec.recommend({a.histories[i % n]}, a.k, a.exclude_seen);
  for (long i = 0; i < a.bench; ++i) {
    const std::vector<std::vector<std::string>> one{a.histories[i % n]};
    const auto t0 = std::chrono::steady_clock::now();
    const auto out = rec.recommend(one, a.k, a.exclude_seen);
    const auto t1 = std::chrono::steady_clock::now();
    if (out.size() != 1) throw lite::EngineError("bench: no answer");
    total_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    model_ms.push_back(rec.last_model_ms());
  }
  if (a.json) {
    json j = {{"engine", rec.backend().describe()},
              {"calls", a.bench},
              {"warmup", a.warmup},
              {"batch", 1},
              {"k", a.k},
              {"histories", n},
              {"p50_ms", percentile(total_ms, 50)},
              {"p99_ms", percentile(total_ms, 99)},
              {"model_p50_ms", percentile(model_ms, 50)},
              {"model_p99_ms", percentile(model_ms, 99)},
              {"total_ms", total_ms},
              {"model_ms", model_ms}};
    std::cout << j.dump() << '\n';
  } else {
    std::printf("%s\n%ld calls at batch 1 (k=%d, %zu histories, %ld warm-up)\n",
                rec.backend().describe().c_str(), a.bench, a.k, n, a.warmup);
    std::printf("recommend(): p50 %.3f ms  p99 %.3f ms\n", percentile(total_ms, 50),
                percentile(total_ms, 99));
    std::printf("model only:  p50 %.3f ms  p99 %.3f ms\n", percentile(model_ms, 50),
                percentile(model_ms, 99));
  }
  return 0;
}

void print_results(const lite::Recommender& rec, const Args& a,
                   const std::vector<lite::Recommendation>& out) {
  if (a.json) {
    json results = json::array();
    for (const auto& r : out) {
      results.push_back({{"ids", r.ids},
                         {"scores", r.scores},
                         {"titles", r.titles},
                         {"indices", r.indices},
                         {"fallback", r.fallback}});
    }
    json profile = nullptr;  // the shapes every model call kept to (none: an older artifact)
    if (const auto& p = rec.profile()) {
      auto range = [](const lite::ShapeRange& r) {
        return json{{"min", {r.min[0], r.min[1]}},
                    {"opt", {r.opt[0], r.opt[1]}},
                    {"max", {r.max[0], r.max[1]}}};
      };
      profile = {{"source", p->source},
                 {"item_ids", range(p->item_ids)},
                 {"exclude_ids", range(p->exclude_ids)}};
    }
    const json j = {{"artifact", a.artifact},
                    {"engine", rec.backend().describe()},
                    {"k", a.k},
                    {"exclude_seen", a.exclude_seen},
                    {"profile", profile},
                    {"results", results}};
    std::cout << j.dump() << '\n';
    return;
  }
  for (std::size_t b = 0; b < out.size(); ++b) {
    const auto& r = out[b];
    std::printf("history %zu (%zu items)%s\n", b + 1, a.histories[b].size(),
                r.fallback ? ": empty, most popular items" : "");
    for (std::size_t j = 0; j < r.ids.size(); ++j) {
      std::printf("  %2zu. %-12s %10.4f  %s\n", j + 1, r.ids[j].c_str(),
                  static_cast<double>(r.scores[j]), r.titles[j].c_str());
    }
  }
}

// The int64 tensors recommend() would feed the model, row by row.
int print_inputs(const Args& a) {
  const auto art = lite::Artifact::open(a.artifact, a.options.verify);
  const auto in = lite::make_inputs(art.batch_indices(a.histories), art.max_history(),
                                    art.pad_id(), a.exclude_seen);
  auto rows = [&](const std::vector<std::int64_t>& flat, std::int64_t width) {
    json out = json::array();
    for (std::int64_t b = 0; b < in.batch; ++b) {
      out.push_back(std::vector<std::int64_t>(flat.begin() + b * width,
                                              flat.begin() + (b + 1) * width));
    }
    return out;
  };
  const json j = {{"item_ids", rows(in.item_ids, in.history)},
                  {"exclude_ids", rows(in.exclude_ids, in.exclude)}};
  std::cout << j.dump() << '\n';
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse_args(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "lite-recommend: error: " << e.what() << "\n(see lite-recommend --help)\n";
    return 2;
  }
  try {
    if (args.inputs_only) return print_inputs(args);
    lite::Recommender rec(args.artifact, args.options);
    if (args.bench > 0) return run_bench(rec, args);
    print_results(rec, args, rec.recommend(args.histories, args.k, args.exclude_seen));
    return 0;
  } catch (const lite::ArgumentError& e) {
    std::cerr << "lite-recommend: error: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "lite-recommend: error: " << e.what() << '\n';
    return 1;
  }
}
