// Reading and verifying an artifact directory (mirrors lite_export/artifact.py and catalog.py).
#include "lite/artifact.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

namespace lite {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string quoted_list(const std::vector<std::string>& names, std::size_t shown) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < shown; ++i) {
    if (i) out += ", ";
    out += "'" + names[i] + "'";
  }
  if (names.size() > shown) out += " (+" + std::to_string(names.size() - shown) + " more)";
  return out;
}

std::string unknown_message(const std::vector<std::string>& unknown, std::size_t num_items) {
  return "unknown item ids: " + quoted_list(unknown, 10) + ". The catalog has " +
         std::to_string(num_items) +
         " items; pass external ids exactly as they appear in items.jsonl";
}

json read_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ArtifactError("cannot read " + path.string());
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    throw ArtifactError(path.string() + " is not valid JSON (" + e.what() +
                        "); re-run `lite export`");
  }
}

// dims.<key> as a positive integer, or ArtifactError.
std::int64_t dim(const json& manifest, const fs::path& mf, const char* key) {
  const auto dims = manifest.find("dims");
  if (dims == manifest.end() || !dims->is_object() || !dims->contains(key) ||
      !(*dims)[key].is_number_integer() || (*dims)[key].get<std::int64_t>() < 1) {
    throw ArtifactError(mf.string() + " has no positive integer dims." + key +
                        "; re-run `lite export`");
  }
  return (*dims)[key].get<std::int64_t>();
}

// profile.<name>.<which> as [batch, width] of positive integers, or ArtifactError.
void shape_of(const json& range, const fs::path& mf, const std::string& what, std::int64_t out[2]) {
  if (!range.is_array() || range.size() != 2 || !range[0].is_number_integer() ||
      !range[1].is_number_integer() || range[0].get<std::int64_t>() < 1 ||
      range[1].get<std::int64_t>() < 1) {
    throw ArtifactError(mf.string() + ": profile." + what +
                        " must be two positive integers [BATCH, WIDTH]; re-run `lite export`");
  }
  out[0] = range[0].get<std::int64_t>();
  out[1] = range[1].get<std::int64_t>();
}

// The manifest's "profile" (lite_export.engines.profile.InputProfile.from_manifest).
std::optional<InputProfile> parse_profile(const json& manifest, const fs::path& mf) {
  const auto it = manifest.find("profile");
  if (it == manifest.end() || it->is_null()) return std::nullopt;
  InputProfile p;
  for (const char* name : {"item_ids", "exclude_ids"}) {
    if (!it->is_object() || !it->contains(name) || !(*it)[name].is_object()) {
      throw ArtifactError(mf.string() + ": profile must hold item_ids and exclude_ids; re-run "
                          "`lite export`");
    }
    ShapeRange& r = std::string(name) == "item_ids" ? p.item_ids : p.exclude_ids;
    const json& entry = (*it)[name];
    for (const char* which : {"min", "opt", "max"}) {
      if (!entry.contains(which)) {
        throw ArtifactError(mf.string() + ": profile." + name + " lacks " + which +
                            "; re-run `lite export`");
      }
      std::int64_t* out = std::string(which) == "min"   ? r.min
                          : std::string(which) == "opt" ? r.opt
                                                        : r.max;
      shape_of(entry[which], mf, std::string(name) + "." + which, out);
    }
    for (int d = 0; d < 2; ++d) {
      if (!(r.min[d] <= r.opt[d] && r.opt[d] <= r.max[d])) {
        throw ArtifactError(mf.string() + ": profile." + name + " is not min <= opt <= max (" +
                            r.str() + "); re-run `lite export`");
      }
    }
  }
  return p;
}

std::string item_id_of(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
  throw std::invalid_argument("'id' must be a string");
}

std::vector<Item> read_items(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ArtifactError(path.string() + " is missing from the artifact; re-export");
  std::vector<Item> items;
  std::string line;
  for (std::size_t lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    try {
      const json row = json::parse(line);
      if (!row.is_object()) throw std::invalid_argument("not a JSON object");
      const auto index = row.at("index").get<std::int64_t>();
      if (index != static_cast<std::int64_t>(items.size())) {
        throw std::invalid_argument("index " + std::to_string(index) + " out of order (expected " +
                                    std::to_string(items.size()) + ")");
      }
      Item item;
      item.id = item_id_of(row.at("id"));
      if (auto t = row.find("title"); t != row.end() && t->is_string()) item.title = *t;
      if (auto p = row.find("popularity"); p != row.end()) item.popularity = p->get<std::int64_t>();
      if (auto r = row.find("retired"); r != row.end()) item.retired = r->get<bool>();
      items.push_back(std::move(item));
    } catch (const std::exception& e) {
      throw ArtifactError(path.string() + " line " + std::to_string(lineno) + ": bad item row (" +
                          e.what() +
                          "); each line must be a JSON object like {\"index\": 0, \"id\": "
                          "\"1193\", \"title\": \"...\", \"popularity\": 3}");
    }
  }
  return items;
}

}  // namespace

std::string ShapeRange::str() const {
  auto pair = [](const std::int64_t d[2]) {
    return "[" + std::to_string(d[0]) + ", " + std::to_string(d[1]) + "]";
  };
  return "min " + pair(min) + ", opt " + pair(opt) + ", max " + pair(max);
}

UnknownItemError::UnknownItemError(std::vector<std::string> unknown, std::size_t num_items)
    : Error(unknown_message(unknown, num_items)), unknown_(std::move(unknown)) {}

std::string sha256_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ArtifactError("cannot read " + path.string());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    throw Error("OpenSSL could not start a sha256 digest");
  }
  std::vector<char> block(std::size_t{1} << 22);
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    const auto got = in.gcount();
    if (got > 0 && EVP_DigestUpdate(ctx.get(), block.data(), static_cast<std::size_t>(got)) != 1) {
      throw Error("OpenSSL sha256 update failed on " + path.string());
    }
  }
  if (in.bad()) throw ArtifactError("read error on " + path.string());
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest.data(), &len) != 1) {
    throw Error("OpenSSL sha256 final failed on " + path.string());
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    out += hex[digest[i] >> 4];
    out += hex[digest[i] & 0xf];
  }
  return out;
}

namespace {

// What open() needs from manifest.json (format 1).
struct Manifest {
  int format_version = 0;
  std::string lite_export_version, precision;
  std::int64_t num_items = 0, max_history = 0, k = 0, pad_id = 0;
  std::map<std::string, FileEntry> files;
  std::optional<InputProfile> profile;
};

Manifest parse_manifest(const json& manifest, const fs::path& dir, const fs::path& mf) {
  Manifest m;
  if (!manifest.is_object() || manifest.value("format", std::string()) != kArtifactFormat) {
    throw ArtifactError(mf.string() +
                        " is not a lite-export artifact manifest (format tag missing)");
  }
  const auto version = manifest.find("format_version");
  m.format_version = version != manifest.end() && version->is_number_integer()
                         ? version->get<int>()
                         : 0;
  m.lite_export_version = manifest.value("lite_export_version", std::string("?"));
  if (m.format_version > kArtifactVersion) {
    throw ArtifactError(dir.string() + " was written by a newer lite-export (artifact format " +
                        std::to_string(m.format_version) + ", this program reads up to " +
                        std::to_string(kArtifactVersion) + ", written by lite-export " +
                        m.lite_export_version + "); rebuild this program from that version");
  }
  m.num_items = dim(manifest, mf, "num_items");
  m.max_history = dim(manifest, mf, "max_history");
  m.k = dim(manifest, mf, "k");
  m.pad_id = manifest["dims"].value("pad_id", m.num_items);
  if (m.pad_id != m.num_items) {
    throw ArtifactError(mf.string() + ": dims.pad_id " + std::to_string(m.pad_id) +
                        " differs from dims.num_items " + std::to_string(m.num_items) +
                        " (format 1 pads with num_items); re-run `lite export`");
  }
  m.profile = parse_profile(manifest, mf);
  if (auto d = manifest.find("dtypes"); d != manifest.end() && d->is_object()) {
    m.precision = d->value("compute", std::string());
  }
  if (auto files = manifest.find("files"); files != manifest.end() && files->is_object()) {
    for (const auto& [name, entry] : files->items()) {
      if (!entry.is_object() || !entry.contains("sha256") || !entry.contains("bytes")) {
        throw ArtifactError(mf.string() + ": files." + name +
                            " lacks sha256 or bytes; re-run `lite export`");
      }
      m.files[name] = FileEntry{entry["sha256"].get<std::string>(),
                                entry["bytes"].get<std::uintmax_t>()};
    }
  }
  return m;
}

// Every listed file exists with its recorded size and sha256 (artifact.verify_artifact).
void verify_files(const fs::path& dir, const std::map<std::string, FileEntry>& files) {
  for (const auto& [name, entry] : files) {
    const fs::path f = dir / name;
    if (!fs::is_regular_file(f)) {
      throw ArtifactError(f.string() +
                          " is missing from the artifact; copy the whole directory again or "
                          "re-export");
    }
    const auto size = fs::file_size(f);
    if (size != entry.bytes) {
      throw ArtifactError(f.string() + " has " + std::to_string(size) +
                          " bytes but the manifest recorded " + std::to_string(entry.bytes) +
                          " (truncated or altered); copy the artifact again or re-export");
    }
    if (sha256_file(f) != entry.sha256) {
      throw ArtifactError(f.string() +
                          " does not match its sha256 in manifest.json (altered or corrupted); "
                          "copy the artifact again or re-export");
    }
  }
}

}  // namespace

Artifact Artifact::open(const fs::path& dir, bool verify) {
  if (!fs::is_directory(dir)) {
    throw ArtifactError("artifact directory " + dir.string() +
                        " does not exist; create one with `lite export CKPT --out " +
                        dir.string() + "`");
  }
  const fs::path mf = dir / "manifest.json";
  if (!fs::is_regular_file(mf)) {
    throw ArtifactError(dir.string() +
                        " has no manifest.json: it is not a lite-export artifact (or the export "
                        "did not finish); re-run `lite export`");
  }
  Manifest m;
  try {
    m = parse_manifest(read_json_file(mf), dir, mf);
  } catch (const json::exception& e) {
    throw ArtifactError(mf.string() + " has an unexpected layout (" + e.what() +
                        "); re-run `lite export`");
  }
  if (verify) verify_files(dir, m.files);

  Artifact art;
  art.dir_ = dir;
  art.files_ = std::move(m.files);
  art.num_items_ = m.num_items;
  art.max_history_ = m.max_history;
  art.k_ = m.k;
  art.pad_id_ = m.pad_id;
  art.format_version_ = m.format_version;
  art.precision_ = m.precision;
  art.lite_export_version_ = m.lite_export_version;
  art.profile_ = m.profile;

  const fs::path items_path = dir / "items.jsonl";
  art.items_ = read_items(items_path);
  if (static_cast<std::int64_t>(art.items_.size()) != art.num_items_) {
    throw ArtifactError(items_path.string() + " has " + std::to_string(art.items_.size()) +
                        " items but manifest.json says " + std::to_string(art.num_items_) +
                        "; re-export");
  }
  art.index_.reserve(art.items_.size());
  for (std::size_t i = 0; i < art.items_.size(); ++i) {
    if (!art.index_.emplace(art.items_[i].id, static_cast<std::int64_t>(i)).second) {
      throw ArtifactError(items_path.string() + ": external id '" + art.items_[i].id +
                          "' appears twice; ids must be unique");
    }
  }
  // most popular first, ties by lower index, retired items (lite catalog remove) last
  // (catalog.most_popular)
  art.popular_order_.resize(art.items_.size());
  for (std::size_t i = 0; i < art.items_.size(); ++i) {
    art.popular_order_[i] = static_cast<std::int64_t>(i);
  }
  std::stable_sort(art.popular_order_.begin(), art.popular_order_.end(),
                   [&](std::int64_t a, std::int64_t b) {
                     if (art.items_[a].retired != art.items_[b].retired) {
                       return !art.items_[a].retired;
                     }
                     return art.items_[a].popularity > art.items_[b].popularity;
                   });
  return art;
}

std::vector<std::int64_t> Artifact::indices(const std::vector<std::string>& external_ids) const {
  std::vector<std::int64_t> out;
  std::vector<std::string> unknown;
  out.reserve(external_ids.size());
  for (const auto& ext : external_ids) {
    const auto it = index_.find(ext);
    if (it == index_.end()) {
      unknown.push_back(ext);
    } else {
      out.push_back(it->second);
    }
  }
  if (!unknown.empty()) throw UnknownItemError(std::move(unknown), items_.size());
  return out;
}

std::vector<std::vector<std::int64_t>> Artifact::batch_indices(
    const std::vector<std::vector<std::string>>& histories) const {
  std::vector<std::vector<std::int64_t>> out;
  std::vector<std::string> unknown;
  out.reserve(histories.size());
  for (const auto& h : histories) {
    try {
      out.push_back(indices(h));
    } catch (const UnknownItemError& e) {
      for (const auto& u : e.unknown()) {
        if (std::find(unknown.begin(), unknown.end(), u) == unknown.end()) unknown.push_back(u);
      }
    }
  }
  if (!unknown.empty()) throw UnknownItemError(std::move(unknown), items_.size());
  return out;
}

std::vector<std::int64_t> Artifact::most_popular(std::size_t k) const {
  const auto n = std::min(k, popular_order_.size());
  return {popular_order_.begin(), popular_order_.begin() + static_cast<std::ptrdiff_t>(n)};
}

}  // namespace lite
