"""spaceone.api.core.v1.ServerInfo servicer."""

from policyhub import __version__
from policyhub._gen.spaceone.api.core.v1 import server_info_pb2, server_info_pb2_grpc


class ServerInfoAPI(server_info_pb2_grpc.ServerInfoServicer):
    def get_version(self, request, context):
        return server_info_pb2.VersionInfo(version=__version__)
