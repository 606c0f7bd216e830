/** The product version; the agent reports it to the server. */
export const APP_VERSION = '0.1.0';
