"""Networks: the task network (residual adapter), hypernetworks and conditioning modules. No training code here."""
