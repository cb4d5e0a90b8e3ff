"""What a technician should do, per rule, and the names of network targets in words.

Texts people read name no internal identifiers: a ticket about ``target:peer`` speaks of
"the partner classroom", not of ``peer``.  The advice is the rule's first step; the
agent's own message, when it gave one, says more about the cause it saw.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ADVICE", "advice", "target_label"]

ADVICE: Final[dict[str, tuple[str, str]]] = {
    "device_offline": ("检查教室电脑电源和网线；开机后代理程序会自动上线",
                       "check the classroom PC's power and network cable; the agent reconnects "
                       "on its own once the PC is on"),
    "device_silent": ("远程重启代理程序，或重启教室电脑", "restart the agent remotely, or the PC"),
    "device_cloned": ("给复制出的电脑重新注册设备身份",
                      "enrol the copied PC under its own identity"),
    "camera_missing": ("重新插好摄像头 USB 线，或更换摄像头",
                       "re-plug the camera's USB cable or replace the camera"),
    "camera_black": ("取下镜头盖、移除遮挡、打开教室灯",
                     "remove the lens cap or cover, turn on the light"),
    "camera_frozen": ("重新插拔摄像头或重启采集软件",
                      "re-plug the camera or restart the capture software"),
    "camera_fault": ("重新插拔摄像头", "re-plug the camera"),
    "mic_missing": ("检查麦克风 USB/音频线", "check the microphone's USB/audio cable"),
    "mic_silent": ("检查静音键、线缆和声卡输入设置",
                   "check the mute switch, the cable and the sound card's input"),
    "mic_clipping": ("调低麦克风输入增益", "turn the microphone's input gain down"),
    "mic_fault": ("重新插拔麦克风", "re-plug the microphone"),
    "speaker_missing": ("检查音频线和功放电源", "check the audio cable and the amplifier's power"),
    "display_disconnected": ("检查 HDMI 线和投影仪/显示器电源",
                             "check the HDMI cable and the projector's or screen's power"),
    "target_unreachable": ("检查网线、网关和对方设备电源",
                           "check the cable, the gateway and the other end's power"),
    "network_loss": ("检查网线、交换机和校园网出口", "check the cable, the switch and the uplink"),
    "network_jitter": ("检查无线干扰和出口拥塞", "check for Wi-Fi interference and congestion"),
    "network_rtt": ("检查校园网出口占用和路由", "check the school uplink's load and route"),
    "network_fault": ("检查本机网络设置", "check this PC's network settings"),
    "bandwidth_low": ("检查校园网出口占用，暂停其他上传下载",
                      "check the school uplink, pause other uploads and downloads"),
    "camera_stream_failed": ("检查网络摄像头电源、网线和 IP 地址",
                             "check the network camera's power, cable and IP address"),
    "av_host_unreachable": ("检查编码器/录播主机电源和网线",
                            "check the encoder's or recording host's power and cable"),
    "avgear_fault": ("检查网络音视频设备配置", "check the network AV equipment's settings"),
    "disk_full": ("清理录像和日志文件", "clean up recordings and logs"),
    "overheating": ("检查风扇和通风，清理灰尘", "check the fan and ventilation, remove dust"),
    "clock_unsynced": ("检查 NTP 服务和网络", "check NTP and the network"),
    "clock_skew": ("在设备上启用 NTP 时间同步", "enable NTP time sync on the device"),
    "probe_failed": ("把此信息转给运维（检测程序出错）",
                     "pass this on to support (a probe failed)"),
    "check_failed": ("查看检测结果中的每一项", "see each finding of the check"),
    "check_no_answer": ("检查教室电脑是否开机、联网", "check the classroom PC is on and online"),
    "device_never_connected": ("检查电源、网络和设备登记", "check power, network and enrolment"),
    "device_not_enrolled": ("在清单中登记或启用它，或收回其 MQTT 账号",
                            "enrol or enable it in the inventory, or revoke its MQTT account"),
}

# The network targets the agent and the checks name, in words.
_TARGETS: Final[dict[str, tuple[str, str]]] = {
    "fleet": ("平台服务器", "the fleet server"),
    "peer": ("对端教室", "the partner classroom"),
    "gateway": ("校园网关", "the school gateway"),
}


def advice(rule: str) -> tuple[str, str]:
    return ADVICE.get(rule, ("", ""))


def target_label(name: str) -> tuple[str, str]:
    """"peer" -> the partner classroom; "peer-3" (one of several) likewise; any other
    configured name is the school's own word for it and kept."""
    base = name.split("-", 1)[0]
    if base in _TARGETS:
        zh, en = _TARGETS[base]
        return zh, en
    return f"网络目标 {name}", f"network target {name}"
