/** The product version; container image tags and the chart appVersion follow it. */
export const APP_VERSION = '0.1.0';
