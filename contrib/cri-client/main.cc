// berth-cri: a minimal crictl stand-in for Debian 12 (which does not package crictl). It sends
// one CRI ImageService request (runtime.v1) to a socket and prints the response as JSON, exactly
// as it came over the wire. The connection is berth/cri's ImageServiceClient (which the berth
// CLI uses too); this tool only uses its raw stub.
//
//   berth-cri [--endpoint unix:///run/berth/berth.sock] pull REF [--username U --password P]
//   berth-cri images [FILTER] | inspect REF | rmi REF | fsinfo
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>

#include "berth/cri/image_service_client.h"

namespace {

int Print(const grpc::Status& status, const google::protobuf::Message& response) {
  if (!status.ok()) {
    std::fprintf(stderr, "rpc error: code = %d desc = %s\n", static_cast<int>(status.error_code()),
                 status.error_message().c_str());
    return 1;
  }
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(response, &json, options);
  std::cout << json;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"berth-cri: send one CRI ImageService request and print the response"};
  std::string endpoint = "unix:///run/berth/berth.sock";
  std::string reference, username, password;
  bool verbose = true;
  app.add_option("--endpoint", endpoint, "unix:///PATH of the image service");
  app.require_subcommand(1);
  auto* pull = app.add_subcommand("pull", "PullImage");
  pull->add_option("REF", reference)->required();
  pull->add_option("--username", username);
  pull->add_option("--password", password);
  auto* images = app.add_subcommand("images", "ListImages");
  images->add_option("FILTER", reference);
  auto* inspect = app.add_subcommand("inspect", "ImageStatus (verbose)");
  inspect->add_option("REF", reference)->required();
  auto* rmi = app.add_subcommand("rmi", "RemoveImage");
  rmi->add_option("REF", reference)->required();
  app.add_subcommand("fsinfo", "ImageFsInfo");
  CLI11_PARSE(app, argc, argv);

  auto client = berth::cri::ImageServiceClient::Connect(endpoint);
  if (!client) {
    std::fprintf(stderr, "error: %s\n", client.error().ToString().c_str());
    return 1;
  }
  runtime::v1::ImageService::Stub* stub = &(*client)->stub();
  grpc::ClientContext context;
  if (pull->parsed()) {
    runtime::v1::PullImageRequest request;
    request.mutable_image()->set_image(reference);
    if (!username.empty()) {
      request.mutable_auth()->set_username(username);
      request.mutable_auth()->set_password(password);
    }
    runtime::v1::PullImageResponse response;
    return Print(stub->PullImage(&context, request, &response), response);
  }
  if (images->parsed()) {
    runtime::v1::ListImagesRequest request;
    if (!reference.empty()) request.mutable_filter()->mutable_image()->set_image(reference);
    runtime::v1::ListImagesResponse response;
    return Print(stub->ListImages(&context, request, &response), response);
  }
  if (inspect->parsed()) {
    runtime::v1::ImageStatusRequest request;
    request.mutable_image()->set_image(reference);
    request.set_verbose(verbose);
    runtime::v1::ImageStatusResponse response;
    return Print(stub->ImageStatus(&context, request, &response), response);
  }
  if (rmi->parsed()) {
    runtime::v1::RemoveImageRequest request;
    request.mutable_image()->set_image(reference);
    runtime::v1::RemoveImageResponse response;
    return Print(stub->RemoveImage(&context, request, &response), response);
  }
  runtime::v1::ImageFsInfoResponse response;
  return Print(stub->ImageFsInfo(&context, runtime::v1::ImageFsInfoRequest(), &response), response);
}
