"""What to check, by cause: the words a teacher or technician reads next to a failure.

USB and network devices need different hands (re-plug the cable vs. check the camera's
power, address and account), and a DNS failure is not a cable problem.  Texts are
bilingual and never carry raw errno text.
"""

from __future__ import annotations

from typing import Final

__all__ = ["NETWORK", "network_advice", "stream_advice"]

#: cause (agent.hardware.netcause) -> (Chinese, English).
NETWORK: Final[dict[str, tuple[str, str]]] = {
    "link_down": ("本机网络未连接：检查网线是否插好、网口指示灯和交换机",
                  "this PC has no network link: check the cable, the port's lights and the switch"),
    "no_route": ("本机没有通往该地址的路由：检查 IP 地址和网关设置（DHCP）",
                 "no route from this PC: check the IP address and gateway settings (DHCP)"),
    "dns_no_such_name": ("域名不存在：核对配置中的主机名拼写",
                         "the name does not exist: check the host name in the config"),
    "dns_unreachable": ("DNS 服务器无响应：检查本机 DNS 服务器设置和学校 DNS",
                        "the DNS server does not answer: check this PC's DNS server setting "
                        "and the school's DNS"),
    "dns_failed": ("域名解析失败：检查 DNS 服务器设置",
                   "name resolution failed: check the DNS server setting"),
    "refused": ("对方在线但端口未开放：检查对方服务是否运行、防火墙是否放行",
                "the host is up but the port is closed: check the service runs and the firewall"),
    "host_unreachable": ("对方设备不可达：检查对方设备的电源和网线，或网关",
                         "the host cannot be reached: check its power and cable, or the gateway"),
    "timeout": ("对方无响应：检查对方设备是否开机，以及校园网出口和防火墙",
                "no answer: check the host is on, and the school uplink and firewall"),
    "auth": ("用户名或密码被拒绝：核对配置中的摄像头账号",
             "user name or password refused: check the camera account in the config"),
    "not_found": ("码流路径不存在：核对 RTSP 地址中的路径（通道号）",
                  "no such stream: check the path (channel) in the RTSP URL"),
    "icmp_not_permitted": ("本机不允许发送 ICMP：设置 net.ipv4.ping_group_range，"
                           "或把目标写成 主机:端口",
                           "ICMP not permitted here: set net.ipv4.ping_group_range, or give the "
                           "target as host:port"),
}


def network_advice(cause: str) -> tuple[str, str]:
    """The advice for ``cause``; an unknown cause gets the general network advice."""
    return NETWORK.get(cause, ("检查网络连接、网关和校园网出口",
                               "check the network connection, the gateway and the school uplink"))


def stream_advice(cause: str, message: str) -> tuple[str, str]:
    """Advice for a network camera that gives no picture: by cause, or with ffmpeg's own
    (redacted) line where it named none, the best clue there is."""
    if cause:
        return network_advice(cause)
    return (f"检查摄像头电源、网线、IP 地址和 RTSP 地址（{message}）",
            f"check the camera's power, cable, IP address and RTSP URL ({message})")
