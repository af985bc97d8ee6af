// grpc_probe: what a generic gRPC tool sees of ublkgwd, for the tests.
//   grpc_probe TARGET health             prints SERVING / NOT_SERVING / ...
//   grpc_probe TARGET services           prints each service, one per line
//   grpc_probe TARGET describe SYMBOL    prints the file defining SYMBOL
// TARGET: unix:PATH, or HOST:PORT with --tls-ca CA [--tls-cert C --tls-key K].
// Exit 0 on success; 1 with the gRPC error on stderr.
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "google/protobuf/descriptor.pb.h"
#include "grpcpp/grpcpp.h"
#include "probe/health.grpc.pb.h"
#include "probe/reflection.grpc.pb.h"

namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int Fail(const grpc::Status& s) {
  std::cerr << "grpc_probe: " << s.error_code() << ": " << s.error_message() << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string target, command, argument, ca, cert, key;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--tls-ca" && i + 1 < argc) {
      ca = argv[++i];
    } else if (a == "--tls-cert" && i + 1 < argc) {
      cert = argv[++i];
    } else if (a == "--tls-key" && i + 1 < argc) {
      key = argv[++i];
    } else if (target.empty()) {
      target = a;
    } else if (command.empty()) {
      command = a;
    } else {
      argument = a;
    }
  }
  if (target.empty() || command.empty()) {
    std::cerr << "usage: grpc_probe TARGET health|services|describe SYMBOL [--tls-ca CA "
                 "[--tls-cert C --tls-key K]]\n";
    return 2;
  }
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = Read(ca);
    if (!cert.empty()) {
      ssl.pem_cert_chain = Read(cert);
      ssl.pem_private_key = Read(key);
    }
    creds = grpc::SslCredentials(ssl);
  }
  auto channel = grpc::CreateChannel(target, creds);
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(10);

  if (command == "health") {
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline);
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status s = stub->Check(&ctx, grpc::health::v1::HealthCheckRequest{}, &response);
    if (!s.ok()) return Fail(s);
    std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status())
              << "\n";
    return 0;
  }
  if (command == "services" || command == "describe") {
    auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline);
    auto stream = stub->ServerReflectionInfo(&ctx);
    grpc::reflection::v1alpha::ServerReflectionRequest request;
    if (command == "services") {
      request.set_list_services("");
    } else {
      request.set_file_containing_symbol(argument);
    }
    stream->Write(request);
    stream->WritesDone();
    grpc::reflection::v1alpha::ServerReflectionResponse response;
    while (stream->Read(&response)) {
      for (const auto& service : response.list_services_response().service()) {
        std::cout << service.name() << "\n";
      }
      for (const auto& bytes : response.file_descriptor_response().file_descriptor_proto()) {
        google::protobuf::FileDescriptorProto file;
        if (file.ParseFromString(bytes)) std::cout << file.name() << "\n";
      }
      if (response.has_error_response()) {
        std::cerr << "grpc_probe: " << response.error_response().error_message() << "\n";
      }
    }
    const grpc::Status s = stream->Finish();
    if (!s.ok()) return Fail(s);
    return 0;
  }
  std::cerr << "grpc_probe: unknown command " << command << "\n";
  return 2;
}
