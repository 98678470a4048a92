"""The libvirt domain XML of a ClickOS VM (pure).

As ClickOS's own tools boot it (cnplab/cosmos src/clickos.c builds an xl config
of the same shape): a paravirtualised Xen guest running the ClickOS kernel
image in a few MB, one vif per interface on the VALE switch ``vale0``, attached
by the ``vif-vale`` hotplug script (cosmos etc/xen/scripts/vif-vale).
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

CLICKOS_MEMORY_KIB = 8192
VALE_SWITCH = "vale0"
VIF_SCRIPT = "vif-vale"


def domain_xml(name: str, kernel: str, macs: list[str], description: str = "",
               memory_kib: int = CLICKOS_MEMORY_KIB, hypervisor: str = "xen") -> str:
    """The domain definition; ``hypervisor='test'`` is for libvirt's test driver.

    The test driver (``test:///default``) accepts only its own domain type and
    the ``hvm`` OS type; those two attributes are the only difference, so
    everything else is exercised for real against it.
    """
    domain_type, os_type = ("test", "hvm") if hypervisor == "test" else ("xen", "xenpv")
    interfaces = "".join(
        f"    <interface type='bridge'>\n"
        f"      <source bridge={quoteattr(VALE_SWITCH)}/>\n"
        f"      <script path={quoteattr(VIF_SCRIPT)}/>\n"
        f"      <mac address={quoteattr(mac)}/>\n"
        f"    </interface>\n" for mac in macs)
    return (f"<domain type={quoteattr(domain_type)}>\n"
            f"  <name>{escape(name)}</name>\n"
            f"  <description>{escape(description)}</description>\n"
            f"  <memory unit='KiB'>{memory_kib}</memory>\n"
            f"  <vcpu>1</vcpu>\n"
            f"  <os>\n"
            f"    <type>{os_type}</type>\n"
            f"    <kernel>{escape(kernel)}</kernel>\n"
            f"  </os>\n"
            f"  <on_crash>destroy</on_crash>\n"
            f"  <devices>\n"
            f"{interfaces}"
            f"  </devices>\n"
            f"</domain>\n")
